"""What posting time (`DeliveryActivities`) and expenses (`ExpenseActivities`) share: the
PSA watermark a read leaves, posting one chunk to the ERP in attempts, and the open-exception
summary. They differ in what they read and post, what a posted record holds, and where the
ledger keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from q2c.delivery.retry import ATTEMPTS, backoff, with_transient_retries
from q2c.engagement.messages import OPEN_EXCEPTION_SAMPLE, PostingResult, TimeExceptionInfo

if TYPE_CHECKING:
    from q2c.ledger.store import Ledger
    from q2c.vendors.kantata.client import KantataClient
    from q2c.vendors.netsuite.client import NetSuiteClient

PSA_MARK_CONCURRENCY = 4
WATERMARK_MARGIN = timedelta(minutes=5)


class Outcome(Protocol):
    """What the ERP says about one item of a batch post (`transient_as_results=True`)."""

    psa_id: str
    retryable: bool


def replay_targets(asked: list[str], open_before: set[str]) -> tuple[list[str], list[str]]:
    """A replay's ids: (those still open, in the order asked without repeats; a sample of those
    that are not open, sorted)."""
    unique = list(dict.fromkeys(asked))
    return [i for i in unique if i in open_before], sorted(set(unique) - open_before)[:OPEN_EXCEPTION_SAMPLE]


async def periods_and_tasks(
    erp: NetSuiteClient, psa: KantataClient, workspace_id: str, days: Sequence[date]
) -> tuple[list, dict]:
    """What validation checks items against: only the accounting periods the items fall in
    (each period is one ERP read), and the workspace's tasks by PSA story id."""
    first, last = min(days), max(days)
    periods = await with_transient_retries(
        lambda: erp.list_accounting_periods(ending_on_or_after=first, starting_on_or_before=last)
    )
    tasks = await with_transient_retries(lambda: psa.workspace_tasks(workspace_id))
    return periods, {t.psa_story_id: t for t in tasks if t.psa_story_id}


def next_watermark(
    stable: bool, server_time: datetime | None, updated_at: dict[str, datetime], waiting: Iterable[str]
) -> datetime | None:
    """The PSA watermark to keep once what a read returned is posted: None (keep the old one)
    when the read was not stable (the PSA list changed while it was read), so nothing is ever
    skipped; else the PSA's time less WATERMARK_MARGIN (clocks and commits in flight). Items
    dated after `through` (`waiting`, by PSA id) wait for a later run: keep them inside its
    window."""
    if not stable or server_time is None:
        return None
    later = [updated_at[i] - timedelta(seconds=1) for i in waiting if i in updated_at]
    return min([server_time - WATERMARK_MARGIN, *later])


Item = TypeVar("Item")
Out = TypeVar("Out", bound=Outcome)
Done = TypeVar("Done")


async def post_in_attempts(
    pending: dict[str, Item],
    send: Callable[[list[Item]], Awaitable[Sequence[Out]]],
    posted_of: Callable[[Item, Out], Done | None],
    rejection_of: Callable[[Item, Out], TimeExceptionInfo],
    record: Callable[[list[Done]], Awaitable[None]],
    mark: Callable[[Done], Awaitable[None]],
    parked: list[TimeExceptionInfo],
    noun: str,
) -> list[Done]:
    """Post the pending items (keyed by PSA id) and mark each posted one in the PSA, retrying
    transient failures item by item; what is posted and recorded stays done even if the attempt
    fails.

    `send` posts items and returns one outcome each; `posted_of` is the posted record of a
    successful outcome (None: not posted); a non-retryable rejection is parked as
    `rejection_of` says. Each attempt records what it posted in the ledger first (`record`): it
    is what tells the next run an item is posted (and with which values), and invoices are built
    from it; the PSA reference (`mark`, PSA_MARK_CONCURRENCY at a time) is for people and tools.
    After ATTEMPTS the still-pending items fail the activity as "VendorUnavailable" (retried)."""
    posted: list[Done] = []
    marks = asyncio.Semaphore(PSA_MARK_CONCURRENCY)

    async def limited_mark(done: Done) -> None:
        async with marks:
            await mark(done)

    for attempt in range(ATTEMPTS):
        outcomes = await send(list(pending.values()))
        done: list[Done] = []
        for outcome in outcomes:
            item = pending[outcome.psa_id]
            record_of = posted_of(item, outcome)
            if record_of is not None:
                done.append(record_of)
            elif not outcome.retryable:
                parked.append(rejection_of(item, outcome))
            if not outcome.retryable:
                pending.pop(outcome.psa_id)
        await record(done)  # the ledger first (see above)
        await asyncio.gather(*(limited_mark(p) for p in done))
        posted += done
        if not pending:
            return posted
        activity.heartbeat(f"{len(pending)} {noun} to post again after transient ERP failures")
        await asyncio.sleep(backoff(attempt))
    raise ApplicationError(
        f"ERP kept failing transiently for {len(pending)} {noun}; retrying the batch", type="VendorUnavailable"
    )


async def with_open_summary(
    ledger: Ledger, opportunity_id: str, result: PostingResult, open_before: set[str] | None = None
) -> PostingResult:
    """The engagement's open exceptions after this run (time and expenses: one queue), from the
    ledger; `open_before` (a replay's targets that were open) tells which of them this run
    resolved."""
    count, by_reason, sample = await asyncio.to_thread(
        ledger.open_exception_summary, opportunity_id, OPEN_EXCEPTION_SAMPLE
    )
    result.open_count, result.open_by_reason = count, by_reason
    result.open_sample = [
        TimeExceptionInfo(psa_id=x.psa_id, reason_code=x.reason_code, message=x.message) for x in sample
    ]
    if open_before:
        still_open = set(await asyncio.to_thread(ledger.open_exception_psa_ids, opportunity_id))
        resolved = sorted(open_before - still_open)
        result.resolved_count = len(resolved)
        result.resolved = resolved[:OPEN_EXCEPTION_SAMPLE]
    return result
