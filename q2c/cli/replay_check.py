"""`q2c replay-check`: would the code in this working tree break a running engagement?

An operator runs it before every deploy, against the Temporal the new workers will serve:
it lists open engagements (EngagementWorkflow, Running), downloads their histories (a bounded
sample by default, `--all` for every one) and replays each against the workflows and the data
converter (codec included) of this checkout, with the SDK's `Replayer`. Replay runs only
deterministic workflow code: no activity runs, nothing is written anywhere.

It prints one line per engagement, `ok` or the error naming the workflow and the event at
which the new code diverged, and exits 1 if any would break. The replay core below
(`replay_history`, `ReplayFailure`) is the same one the committed-history tests in
`tests/replay/` use, so CI and the pre-deploy check judge a history the same way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import typer
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

OPEN_ENGAGEMENTS = 'WorkflowType = "EngagementWorkflow" AND ExecutionStatus = "Running"'
DEFAULT_LIMIT = 100

# how the SDK core names the event a replay diverged at ("HistoryEvent(id: 66, ...)",
# "event id 12", "event 12"), and the sentence it explains it with
_EVENT_ID = re.compile(r"(?:HistoryEvent\(id:\s*|event[ _]id[\s:=]*|event\s+#?)(\d+)", re.IGNORECASE)
_CORE_MESSAGE = re.compile(r'message: "(.*?)", source:')
_QUOTED = re.compile(r"'([^']+)'")
_FAILURE_TYPE = re.compile(r'r#type: "([^"]+)"')
# events that a workflow's commands produce: where a changed order of commands shows
_COMMAND_EVENTS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_CANCELED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
}


class ReplayFailure(AssertionError):
    """A history the given workflow code cannot replay: names the workflow, where the history
    came from, and the event at which the code diverged (its ID and type, when the SDK says)."""

    def __init__(
        self,
        *,
        workflow_type: str,
        workflow_id: str,
        run_id: str | None,
        source: str,
        event_id: int | None,
        event: str,
        cause: str,
    ) -> None:
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.source = source
        self.event_id = event_id
        self.cause = cause
        at = f"event {event_id} ({event})" if event_id is not None else "an event the SDK did not name"
        run = f" run {run_id}" if run_id else ""
        super().__init__(f"{workflow_type} {workflow_id}{run} in {source} does not replay at {at}: {cause}")


async def diverging_event(replayer_: Replayer, history: WorkflowHistory, message: str) -> tuple[int | None, str]:
    """The event at which the code diverged, and what it is (type, activity).

    When the SDK's message names it ("HistoryEvent(id: 66, ...)") that is the answer. Often it
    names only what differs ("Activity type of scheduled event 'post_approved_time' does not
    match ... 'issue_invoice'"): then the failing workflow task is found by replaying ever
    shorter prefixes of the history (each ends at a workflow task start; a bisection, a few
    replays of a run) and the event is that task's first command event, preferring one the
    message names."""
    by_id = {e.event_id: e for e in history.events}
    for match in _EVENT_ID.findall(message):
        event = by_id.get(int(match))
        if event is not None:
            return event.event_id, describe_event(event)
    events = list(history.events)
    starts = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
    if not starts:
        return None, ""

    async def fails(upto: int) -> bool:
        prefix = WorkflowHistory(history.workflow_id, events[: upto + 1])
        return (await replayer_.replay_workflow(prefix, raise_on_replay_failure=False)).replay_failure is not None

    low, high = 0, len(starts)  # the first start whose prefix fails; len(starts): only the whole history does
    while low < high:
        middle = (low + high) // 2
        if await fails(starts[middle]):
            high = middle
        else:
            low = middle + 1
    end = starts[low] if low < len(starts) else len(events)
    begin = max(
        (i for i in range(end) if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED), default=0
    )
    candidates = [e for e in events[begin + 1 : end] if e.event_type in _COMMAND_EVENTS] or events[begin + 1 : end]
    if not candidates:
        return None, ""
    named = set(_QUOTED.findall(message))
    chosen = next((e for e in candidates if describe_event(e).split(" ")[-1] in named), candidates[0])
    return chosen.event_id, describe_event(chosen)


def describe_event(event) -> str:
    """`ActivityTaskScheduled post_approved_time`, `TimerStarted`, ...: an event as a reader
    of the Temporal UI would name it."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").title().replace("_", "")
    if event.HasField("activity_task_scheduled_event_attributes"):
        return f"{kind} {event.activity_task_scheduled_event_attributes.activity_type.name}"
    if event.HasField("marker_recorded_event_attributes"):
        return f"{kind} {event.marker_recorded_event_attributes.marker_name}"
    return kind


def short_cause(failure: BaseException) -> str:
    """The SDK's sentence, without the envelope; for an exception the workflow code raised
    (its message sealed by the codec), the exception type and where to read it."""
    text = str(failure)
    found = _CORE_MESSAGE.search(text)
    message = found.group(1) if found else text
    raised = _FAILURE_TYPE.search(text)
    if message == "Encoded failure" and raised:
        message = f"the workflow code raised {raised.group(1)} (its message is in the worker log above)"
    return f"{type(failure).__name__}: {message}"


def replayer(workflows: Sequence[type], data_converter: DataConverter, interceptors: Sequence = ()) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=data_converter, interceptors=list(interceptors))


async def replay_history(replayer_: Replayer, history: WorkflowHistory, *, source: str) -> None:
    """Replay one run's history; raise ReplayFailure with the workflow, source and event."""
    result = await replayer_.replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    if failure is None:
        return
    event_id, event = await diverging_event(replayer_, history, str(failure))
    raise ReplayFailure(
        workflow_type=_workflow_type(history),
        workflow_id=history.workflow_id,
        run_id=_run_id(history),
        source=source,
        event_id=event_id,
        event=event,
        cause=short_cause(failure),
    ) from failure


def _workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0] if history.events else None
    if first is not None and first.HasField("workflow_execution_started_event_attributes"):
        return first.workflow_execution_started_event_attributes.workflow_type.name
    return "workflow"


def _run_id(history: WorkflowHistory) -> str | None:
    if not history.events:
        return None
    first = history.events[0]
    if first.HasField("workflow_execution_started_event_attributes"):
        return first.workflow_execution_started_event_attributes.original_execution_run_id or None
    return None


# --- the pre-deploy check ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    workflow_id: str
    run_id: str
    error: str | None  # None: replays on this code


async def check_open_engagements(
    client: Client,
    *,
    limit: int | None = DEFAULT_LIMIT,
    query: str = OPEN_ENGAGEMENTS,
    workflows: Sequence[type] | None = None,
    data_converter: DataConverter | None = None,
    interceptors: Sequence | None = None,
) -> list[CheckResult]:
    """Download the histories of open engagements (at most `limit`; None: all) and replay each.
    `workflows` defaults to what the worker of this checkout registers: a test (or an engineer
    trying a change) can pass a variant instead."""
    from q2c.worker import WORKFLOWS, workflow_interceptors

    replayer_ = replayer(
        workflows or WORKFLOWS,
        data_converter or client.data_converter,
        workflow_interceptors() if interceptors is None else interceptors,
    )
    results: list[CheckResult] = []
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            history = await handle.fetch_history()
        except Exception as err:  # a run closed since it was listed, or history unreadable
            results.append(CheckResult(execution.id, execution.run_id, f"history not downloaded: {err}"))
            continue
        try:
            await replay_history(replayer_, history, source=f"Temporal {client.namespace}, run {execution.run_id}")
        except ReplayFailure as failure:
            results.append(CheckResult(execution.id, execution.run_id, str(failure)))
        else:
            results.append(CheckResult(execution.id, execution.run_id, None))
    return results


def report(results: Iterable[CheckResult], echo=typer.echo) -> int:
    """Print one line per engagement; the exit code (1 if any would break)."""
    results = list(results)
    broken = [r for r in results if r.error]
    for r in results:
        echo(
            f"{'ok    ' if r.error is None else 'BREAKS'} {r.workflow_id} {r.run_id}"
            + (f"\n  {r.error}" if r.error else "")
        )
    echo(
        f"{len(results)} open engagement(s) replayed against this checkout: "
        + (f"{len(broken)} would break" if broken else "all compatible")
    )
    return 1 if broken else 0


def mount(app: typer.Typer) -> None:
    @app.command("replay-check")
    def replay_check(
        limit: int = typer.Option(DEFAULT_LIMIT, "--limit", help="replay at most this many open engagements"),
        all_: bool = typer.Option(False, "--all", help="replay every open engagement (no limit)"),
        query: str = typer.Option(OPEN_ENGAGEMENTS, "--query", help="visibility query selecting the workflows"),
    ) -> None:
        """Replay open engagements' histories against this checkout's workflow code (run before a deploy)."""
        from q2c.settings import load_settings
        from q2c.temporal import connect

        async def _run() -> int:
            client = await connect(load_settings())
            return report(await check_open_engagements(client, limit=None if all_ else limit, query=query))

        raise typer.Exit(asyncio.run(_run()))
