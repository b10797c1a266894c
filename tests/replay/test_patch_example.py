"""The one `workflow.patched` example (CONTRIBUTING.md, "Changing workflow code"): the period
memo, `q2c.delivery.workflow.PERIOD_MEMO_PATCH`. Histories recorded before the change
(`histories/0.1.0`) and after it (`histories/0.1.0+period-memo`) both replay on today's code,
each on its own side of the patch; and the change cannot simply be taken out again while
engagements that ran it are open.
"""

from __future__ import annotations

import json

import pytest

from q2c.cli.replay_check import ReplayFailure, replay_history, replayer
from q2c.delivery.workflow import PERIOD_MEMO_PATCH
from q2c.worker import WORKFLOWS, workflow_interceptors
from tests.fixtures.temporal import converter_under_test
from tests.replay.variants import PeriodMemoRemoved
from tools.history_files import HISTORIES, load, patch_markers

BEFORE = HISTORIES / "0.1.0"
AFTER = HISTORIES / f"0.1.0+{PERIOD_MEMO_PATCH}"
PERIOD_LOOP_SCENARIOS = ["tm_full_life", "fixed_fee_full_life", "retainer_full_life", "continue_as_new_six_periods"]


def _memos(recorded) -> list[dict]:
    """What the runs upserted into the memo (the files hold decoded payloads)."""
    found = []
    for run in recorded.runs:
        for event in run.history.events:
            if event.HasField("workflow_properties_modified_event_attributes"):
                fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
                found.append({k: json.loads(v.data) for k, v in fields.items()})
    return found


async def _replay(recorded, workflows=WORKFLOWS) -> None:
    replay = replayer(workflows, converter_under_test(), workflow_interceptors())
    for n, run in enumerate(recorded.runs, start=1):
        await replay_history(replay, run.history, source=f"{recorded.label} (run {n})")


@pytest.mark.parametrize("scenario", PERIOD_LOOP_SCENARIOS)
async def test_histories_from_before_the_patch_replay_without_the_memo(scenario):
    recorded = load(BEFORE / f"{scenario}.json")
    assert all(PERIOD_MEMO_PATCH not in patch_markers(r.history) for r in recorded.runs)
    assert _memos(recorded) == []
    await _replay(recorded)  # patched() answers False on replay: no memo command expected


@pytest.mark.parametrize("scenario", PERIOD_LOOP_SCENARIOS)
async def test_histories_from_after_the_patch_replay_with_the_memo(scenario):
    recorded = load(AFTER / f"{scenario}.json")
    assert all(PERIOD_MEMO_PATCH in patch_markers(r.history) for r in recorded.runs), "a marker in every run"
    memos = _memos(recorded)
    assert memos and all(
        set(m) == {"billing_period", "period_index", "period_closes_at", "contract_version"} for m in memos
    )
    await _replay(recorded)


async def test_the_memo_says_each_period_and_when_it_closes():
    memos = _memos(load(AFTER / "continue_as_new_six_periods.json"))
    assert [m["billing_period"] for m in memos] == [
        f"2027-{month:02d}-01 to 2027-{month:02d}-{last}"
        for month, last in [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30)]
    ]
    assert [m["period_index"] for m in memos] == list(range(6))
    assert memos[0]["period_closes_at"] == "2027-02-01T00:00:00+00:00"


async def test_taking_the_change_out_while_patched_runs_are_open_breaks_them():
    """Why a patch is retired in two steps (deprecate_patch, then removal), never by deleting
    the new branch: runs that took it would no longer replay."""
    recorded = load(AFTER / "tm_full_life.json")
    with pytest.raises(ReplayFailure) as failed:
        await _replay(recorded, [PeriodMemoRemoved])
    assert "WorkflowPropertiesModified" in str(failed.value)
    await _replay(load(BEFORE / "tm_full_life.json"), [PeriodMemoRemoved])  # the old ones never had it
