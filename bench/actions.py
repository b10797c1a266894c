"""Temporal actions of the timed part, counted from each engagement's event history.

Definition printed with the figures (workflow tasks are not actions):
  actions = activity attempts (scheduled + retries) + timers started + updates accepted
            + signals received + search-attribute upserts + markers + continue-as-new
            + child workflows started
This follows how Temporal Cloud meters actions; activity heartbeats and the benchmark's own
status queries are metered there too but leave no history event, so they are not counted.
Only the events from the `request_close` update on are counted: the month-end close of one
billing period, i.e. one engagement-period. The same histories give each engagement's
completion time (its last activity completion, on the server's clock), so the wall time does
not depend on how often the benchmark polls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

DEFINITION = (
    "activity attempts (scheduled + retries) + timers started + updates accepted + signals "
    "+ search-attribute upserts + markers + continue-as-new + child workflows started"
)

_COUNTED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities_scheduled",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upserts",
    EventType.EVENT_TYPE_MARKER_RECORDED: "markers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continue_as_new",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "children",
}


@dataclass
class ActionCount:
    counts: Counter = field(default_factory=Counter)
    engagements: int = 0
    last_activity_done: dict[str, float] = field(default_factory=dict)  # workflow id -> epoch seconds

    @property
    def activity_retries(self) -> int:
        return self.counts["activity_retries"]

    @property
    def actions(self) -> int:
        c = self.counts
        return (
            c["activities_scheduled"]
            + c["activity_retries"]
            + c["timers"]
            + c["updates"]
            + c["signals"]
            + c["search_attribute_upserts"]
            + c["markers"]
            + c["continue_as_new"]
            + c["children"]
        )

    def per_engagement(self, key: str | None = None) -> float:
        value = self.actions if key is None else self.counts[key]
        return value / self.engagements if self.engagements else 0.0


def _is_close_update(event) -> bool:
    if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        return False
    attrs = event.workflow_execution_update_accepted_event_attributes
    return attrs.accepted_request.input.name == "request_close"


@dataclass
class TimedEvents:
    counts: Counter
    last_activity_done: float | None  # epoch seconds of the last activity completion (server clock)


def count_timed_events(events) -> TimedEvents:
    """Counts from the request_close update on (all events if there is none)."""
    events = list(events)
    start = next((i for i, e in enumerate(events) if _is_close_update(e)), 0)
    counts: Counter = Counter()
    last_done: float | None = None
    for event in events[start:]:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            last_done = event.event_time.ToMicroseconds() / 1e6
        key = _COUNTED.get(event.event_type)
        if key:
            counts[key] += 1
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            counts["activity_retries"] += max(0, event.activity_task_started_event_attributes.attempt - 1)
    return TimedEvents(counts, last_done)


async def count_actions(client: Client, workflow_ids: list[str], concurrency: int = 16) -> ActionCount:
    gate = asyncio.Semaphore(concurrency)
    total = ActionCount(engagements=len(workflow_ids))

    async def one(wf_id: str) -> tuple[str, TimedEvents]:
        async with gate:
            history = await client.get_workflow_handle(wf_id).fetch_history()
            return wf_id, count_timed_events(history.events)

    for wf_id, timed in await asyncio.gather(*(one(w) for w in workflow_ids)):
        total.counts.update(timed.counts)
        if timed.last_activity_done is not None:
            total.last_activity_done[wf_id] = timed.last_activity_done
    return total
