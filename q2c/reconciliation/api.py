"""Reconciliation's face: its schedule (ID, spec, policy), its I/O models, and the calls the
worker, the CLI and the console make (ensure / trigger / pause / resume / describe).

The schedule runs `ReconciliationWorkflow` on the engagements' task queue (one worker serves
both), nightly at `Q2C_RECONCILE_CRON` (default 02:00 UTC) or every
`Q2C_RECONCILE_INTERVAL_SECONDS` (the demo calendar). Its policy:
- overlap SKIP: a run still going when the next is due is not doubled;
- catch-up window of one interval (one day for the nightly cron): after an outage the
  missed night runs once, not once per missed night.
`ensure_schedule` at worker startup creates it when it does not exist and leaves an existing
one as it is (paused stays paused: an operator's pause survives a redeploy).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from q2c.engagement.messages import DeliveryConfig
from q2c.settings import DEFAULT_TASK_QUEUE, Settings

WORKFLOW_TYPE = "ReconciliationWorkflow"
DEFAULT_CRON = "0 2 * * *"


def schedule_id(settings: Settings) -> str:
    """One schedule per task queue: `q2c-reconciliation` for the default queue."""
    if settings.task_queue == DEFAULT_TASK_QUEUE:
        return "q2c-reconciliation"
    return f"q2c-reconciliation-{settings.task_queue}"


# --- models -----------------------------------------------------------------------------


class ReconcileState(BaseModel):
    """Carried across continue-as-new: where the Closed Won paging is, and the totals so far."""

    run_id: str
    started_at: datetime
    cursor: str | None = None  # the CRM's nextRecordsUrl; None before the first page
    pages: int = 0
    deals_seen: int = 0
    started: list[str] = Field(default_factory=list)
    checked: int = 0
    differences: int = 0
    repaired: int = 0
    raised: int = 0
    unexplained: int = 0
    done_paging: bool = False


class ReconcileInput(BaseModel):
    trigger: str = "schedule"
    page_size: int = 25  # Closed Won deals per page: the starts and checks of one activity each
    max_starts: int = 200  # engagements one run starts at most (a first run over years of history)
    pages_per_run: int = 20  # continue as new after this many pages (the history stays small)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)  # for the engagements it starts
    check: bool = True
    state: ReconcileState | None = None


class PageInput(BaseModel):
    run_id: str
    cursor: str | None = None
    page_size: int = 25
    starts_left: int = 0
    task_queue: str
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)


class PageResult(BaseModel):
    opportunity_ids: list[str] = Field(default_factory=list)
    started: list[str] = Field(default_factory=list)
    existing: list[str] = Field(default_factory=list)
    deferred: list[str] = Field(default_factory=list)  # no engagement, but this run's start budget is spent
    next_cursor: str | None = None


class CheckInput(BaseModel):
    run_id: str
    opportunity_ids: list[str]


class CheckResult(BaseModel):
    checked: int = 0
    differences: int = 0
    explained: int = 0
    repaired: int = 0
    raised: int = 0
    unexplained: int = 0
    skipped: list[str] = Field(default_factory=list)  # not checkable now (not provisioned yet, ...)


class OrphanInput(BaseModel):
    run_id: str
    trigger: str = "schedule"


class FinishInput(BaseModel):
    run_id: str
    engagements_checked: int


class ReconcileReport(BaseModel):
    run_id: str
    deals_seen: int = 0
    deals_started: int = 0
    started: list[str] = Field(default_factory=list)
    engagements_checked: int = 0
    differences: int = 0
    explained: int = 0
    repaired: int = 0
    raised: int = 0
    unexplained: int = 0
    open_tasks: int = 0
    vendor_calls: int = 0
    duration_seconds: float | None = None


# --- the schedule ---------------------------------------------------------------------------


def schedule_for(settings: Settings, delivery: DeliveryConfig | None = None) -> Schedule:
    interval = settings.reconcile_interval_seconds
    if interval:
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval))])
        catchup = timedelta(seconds=max(interval, 10))
    else:
        spec = ScheduleSpec(cron_expressions=[settings.reconcile_cron or DEFAULT_CRON])
        catchup = timedelta(days=1)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,  # by name: this client face is imported by the workflow, not the reverse
            ReconcileInput(
                page_size=settings.reconcile_page_size,
                max_starts=settings.reconcile_max_starts,
                delivery=delivery or DeliveryConfig(),
            ),
            id=f"{schedule_id(settings)}-run",
            task_queue=settings.task_queue,
            static_summary="Nightly reconciliation: start missed Closed Won deals; check CRM, PSA and ERP agree",
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=catchup),
        state=ScheduleState(note="created by the q2c worker"),
    )


async def ensure_schedule(client: Client, settings: Settings, delivery: DeliveryConfig | None = None) -> bool:
    """Create the schedule unless it exists (True when created). Idempotent: every worker
    calls it at startup; an existing schedule, paused or not, is left as the operator set it."""
    try:
        await client.create_schedule(schedule_id(settings), schedule_for(settings, delivery))
    except ScheduleAlreadyRunningError:
        return False
    return True


async def trigger(client: Client, settings: Settings, *, within: float = 10.0) -> str | None:
    """Run now (even while paused, as Temporal's trigger does); returns the run's workflow ID
    once the schedule has started it, or None if it did not say so `within` seconds.

    The schedule starts the run asynchronously (its own scheduler workflow on the server), so on
    a loaded server the action can take several seconds to appear: a caller that will wait for
    the report anyway gives it a long `within`."""
    import asyncio
    import time

    handle = client.get_schedule_handle(schedule_id(settings))
    before = {a.action.workflow_id for a in (await handle.describe()).info.recent_actions}
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    deadline = time.monotonic() + within
    while True:
        info = (await handle.describe()).info
        for action in list(info.running_actions) + [a.action for a in info.recent_actions]:
            if action.workflow_id not in before:
                return action.workflow_id
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.1)


async def pause(client: Client, settings: Settings, note: str) -> None:
    await client.get_schedule_handle(schedule_id(settings)).pause(note=note)


async def resume(client: Client, settings: Settings, note: str) -> None:
    await client.get_schedule_handle(schedule_id(settings)).unpause(note=note)


async def schedule_state(client: Client, settings: Settings) -> dict:
    """Paused or not, the note, and when it runs next (for the CLI and the console)."""
    desc = await client.get_schedule_handle(schedule_id(settings)).describe()
    return {
        "id": schedule_id(settings),
        "paused": desc.schedule.state.paused,
        "note": desc.schedule.state.note or "",
        "next": [t.isoformat() for t in desc.info.next_action_times[:3]],
        "recent": [a.action.workflow_id for a in desc.info.recent_actions[-5:]],
    }
