"""Every committed history (every version folder, every run) replays against today's
EngagementWorkflow, with the worker's own workflows, interceptors and data converter.

A change to workflow code that would break an engagement running on an older release fails
here, naming the workflow, the history file and the event. The last tests prove the suite
would notice: deliberately changed copies of the period loop must fail, and say where.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from q2c.cli.replay_check import ReplayFailure, replay_history, replayer
from q2c.worker import WORKFLOWS, workflow_interceptors
from tests.fixtures.temporal import converter_under_test
from tests.replay.variants import RetainerInvoicedBeforePosting, TimerAddedToPeriodClose
from tools.history_files import HISTORIES, MANIFEST, all_files, load, patch_markers

FILES = all_files()
REQUIRED_SCENARIOS = {
    "tm_full_life",
    "fixed_fee_full_life",
    "retainer_full_life",
    "steward_pause_fix_resume",
    "change_order_crm",
    "change_order_steward",
    "exceptions_replay_write_off",
    "cancellation",
    "continue_as_new_six_periods",
}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


async def _replay_file(path: Path, workflows=WORKFLOWS) -> None:
    recorded = load(path)
    replay = replayer(workflows, converter_under_test(), workflow_interceptors())
    for n, run in enumerate(recorded.runs, start=1):
        await replay_history(replay, run.history, source=f"{recorded.label} (run {n} of {len(recorded.runs)})")


@pytest.mark.parametrize("path", FILES, ids=_id)
async def test_committed_history_replays_on_todays_code(path: Path):
    await _replay_file(path)


def test_every_version_folder_has_the_required_scenarios_and_a_true_manifest():
    folders = sorted(p for p in HISTORIES.iterdir() if p.is_dir())
    assert folders, "no recorded histories: run `python -m tools.record_histories`"
    for folder in folders:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = {e["scenario"]: e for e in manifest["scenarios"]}
        files = {p.stem for p in folder.glob("*.json") if p.name != MANIFEST}
        assert set(listed) == files, f"{folder.name}: manifest and files differ"
        assert REQUIRED_SCENARIOS <= files, f"{folder.name} lacks {sorted(REQUIRED_SCENARIOS - files)}"
        for name, entry in listed.items():
            recorded = load(folder / f"{name}.json")
            assert entry["runs"] == len(recorded.runs)
            assert entry["events"] == sum(len(r.history.events) for r in recorded.runs)
            assert entry["bytes"] == (folder / entry["file"]).stat().st_size
            assert entry["workflow_id"] == recorded.workflow_id
            assert entry["patches"] == sorted({p for r in recorded.runs for p in patch_markers(r.history)})
        boundaries = listed["continue_as_new_six_periods"]["runs"]
        assert boundaries >= 6, f"{folder.name}: the continue-as-new scenario has {boundaries} runs"


# --- the suite catches non-determinism ------------------------------------------------------


def _first_event(path: Path, activity: str) -> int:
    """The ID of the first scheduling of `activity` in the file's first run."""
    for event in load(path).runs[0].history.events:
        if (
            event.HasField("activity_task_scheduled_event_attributes")
            and event.activity_task_scheduled_event_attributes.activity_type.name == activity
        ):
            return event.event_id
    raise AssertionError(f"{path} never schedules {activity}")


OLDEST = HISTORIES / sorted(p.name for p in HISTORIES.iterdir() if p.is_dir())[0] if HISTORIES.exists() else None


async def test_a_timer_added_to_the_period_close_fails_naming_workflow_file_and_event():
    path = OLDEST / "tm_full_life.json"
    with pytest.raises(ReplayFailure) as failed:
        await _replay_file(path, [TimerAddedToPeriodClose])
    failure = failed.value
    expected = _first_event(path, "post_approved_time")  # the timer now comes where posting was
    assert failure.workflow_id == load(path).workflow_id
    assert failure.event_id == expected
    message = str(failure)
    assert message.startswith(f"EngagementWorkflow {failure.workflow_id} run ")
    assert f"tests/replay/histories/{OLDEST.name}/tm_full_life.json (run 1 of" in message
    assert f"at event {expected} (ActivityTaskScheduled post_approved_time)" in message
    assert "Nondeterminism" in message


async def test_two_activities_swapped_in_the_period_close_fail_at_the_first_moved_one():
    path = OLDEST / "retainer_full_life.json"
    with pytest.raises(ReplayFailure) as failed:
        await _replay_file(path, [RetainerInvoicedBeforePosting])
    expected = _first_event(path, "post_approved_time")  # the invoice is now asked for here
    assert failed.value.event_id == expected, str(failed.value)
    assert f"at event {expected} (ActivityTaskScheduled post_approved_time)" in str(failed.value)
    assert "retainer_full_life.json (run 1 of 4)" in str(failed.value)
