"""What one CRM notification does: only a Closed Won deal starts an engagement.

Salesforce sends an Outbound Message whenever its rule fires, and a rule can fire on any change
of the opportunity, so a notification is no proof the deal was won. Per opportunity:

- its stage is the notification's `StageName`; when the outbound message definition does not
  select that field, it is read from the CRM (one GET of the opportunity) rather than guessed;
- Closed Won: the engagement is started (or restarted after a failure, or told `crm_changed`
  when running), see `q2c.engagement.client`;
- any other stage: nothing starts. An engagement already running is still told `crm_changed`:
  a deal moved back out of Closed Won is something it may need to know. The skip is reported
  with its reason; a later change that makes the deal Closed Won sends a new notification,
  which starts it then.

An opportunity the CRM no longer has is skipped too (a redelivery would never change that).
A CRM that cannot answer raises `CrmUnavailable`, so the webhook withholds its ack and
Salesforce delivers the message again later.

A running engagement is not signalled when the notification is `unchanged` (it repeats the
last one seen, modification stamp included: `q2c.ledger.notifications` says why only then).

Fast path (issue 15): Salesforce gives up on a delivery after 10 s and redelivers, so the up
to 100 notifications of a message are taken concurrently (`take_all`, Q2C_WEBHOOK_CONCURRENCY
at a time, 32 by default; each costs two Temporal calls, a describe and the start, plus a
signal for a running engagement). `take_all` answers per opportunity, so the webhook can keep
the claims of those that were acted on when another failed: the redelivery then redoes only
the failed ones, instead of signalling every engagement of the message again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from q2c.domain.validation import CLOSED_WON
from q2c.engagement.client import (
    StartResult,
    describe_status,
    notify_engagement,
    start_engagement,
    workflow_id_for,
)
from q2c.engagement.messages import DeliveryConfig
from q2c.vendors.http import NOT_FOUND_TYPE

STARTED, RESTARTED, SIGNALLED, FINISHED, SKIPPED = "started", "restarted", "signalled", "finished", "skipped"
UNCHANGED = "unchanged"  # a running engagement, a notification that repeats the last one: no signal
STAGE_FROM_MESSAGE, STAGE_FROM_CRM = "message", "crm"

StageLookup = Callable[[str], Awaitable[str | None]]


class CrmUnavailable(Exception):
    """The CRM could not tell an opportunity's stage now (transport, 5xx, limits, auth)."""


class OpportunityNotInCrm(Exception):
    """The CRM answered 404 for the opportunity."""


@dataclass(frozen=True)
class IntakeOutcome:
    opportunity_id: str
    action: str  # started | restarted | signalled | unchanged | finished | skipped
    stage: str | None
    stage_from: str  # message | crm
    reason: str = ""
    previous_status: str | None = None  # of the run that a restart replaced
    start: StartResult | None = None

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.opportunity_id)

    def as_dict(self) -> dict:
        out = {
            "opportunity_id": self.opportunity_id,
            "workflow_id": self.workflow_id,
            "action": self.action,
            "stage": self.stage,
            "stage_from": self.stage_from,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.previous_status:
            out["previous_status"] = self.previous_status
        return out


def crm_stage_lookup(crm) -> StageLookup:
    """A lookup over a `SalesforceClient`: `GET …/sobjects/Opportunity/{id}?fields=StageName`."""

    async def lookup(opportunity_id: str) -> str | None:
        try:
            record = await crm.get_record("Opportunity", opportunity_id, fields=("StageName",))
        except ApplicationError as err:
            if err.type == NOT_FOUND_TYPE:
                raise OpportunityNotInCrm(opportunity_id) from None
            raise CrmUnavailable(f"the CRM did not give the stage of {opportunity_id}: {err.message}") from err
        return record.get("StageName")

    return lookup


async def take(
    client: Client,
    opportunity_id: str,
    stage: str | None,
    *,
    lookup: StageLookup | None,
    task_queue: str,
    source: str,
    delivery: DeliveryConfig | None = None,
    unchanged: bool = False,
) -> IntakeOutcome:
    """Decide and act for one opportunity (`stage` as the notification gave it, or None);
    `unchanged`: the notification repeats the last one seen, so a running engagement is not
    signalled."""
    stage_from = STAGE_FROM_MESSAGE
    if stage is None:
        if lookup is None:
            raise CrmUnavailable("the notification has no StageName and no CRM is configured to read it")
        stage_from = STAGE_FROM_CRM
        try:
            stage = await lookup(opportunity_id)
        except OpportunityNotInCrm:
            return IntakeOutcome(
                opportunity_id, SKIPPED, None, stage_from, reason="the CRM has no such opportunity (deleted?)"
            )
    if stage != CLOSED_WON:
        if unchanged:
            return IntakeOutcome(
                opportunity_id,
                UNCHANGED,
                stage,
                stage_from,
                reason="the same fields as the last notification (modification stamp included): nothing signalled",
            )
        signalled = await notify_engagement(client, opportunity_id, source=source)
        if signalled:
            return IntakeOutcome(
                opportunity_id,
                SIGNALLED,
                stage,
                stage_from,
                reason=f"stage is '{stage}', not '{CLOSED_WON}': the running engagement was told the CRM changed",
            )
        return IntakeOutcome(
            opportunity_id,
            SKIPPED,
            stage,
            stage_from,
            reason=f"stage is '{stage or 'empty'}', not '{CLOSED_WON}': nothing started",
        )
    if await describe_status(client, opportunity_id) is WorkflowExecutionStatus.RUNNING:
        # no start call for a running engagement: a start is the dev server's costliest write
        wf_id = workflow_id_for(opportunity_id)
        result = StartResult(wf_id, None, already_existed=True, previous_status=WorkflowExecutionStatus.RUNNING.name)
    else:
        result = await start_engagement(
            client, opportunity_id, task_queue=task_queue, source=source, delivery=delivery, notify_existing=False
        )
    running = result.already_existed and result.previous_status == WorkflowExecutionStatus.RUNNING.name
    if running and not unchanged:
        # the CRM spoke again about a running engagement: it reads the opportunity again
        result = dataclasses.replace(result, signalled=await notify_engagement(client, opportunity_id, source=source))
    if result.restarted:
        action = RESTARTED
    elif not result.already_existed:
        action = STARTED
    elif result.signalled:
        action = SIGNALLED
    elif running and unchanged:
        action = UNCHANGED
    else:  # completed for good (or just now, between the start and the signal)
        action = FINISHED
    reason = {
        FINISHED: "the engagement has completed (Closed or Cancelled): not started again",
        RESTARTED: f"the previous run ended {result.previous_status}: started again",
        UNCHANGED: "the same fields as the last notification (modification stamp included): nothing signalled",
    }.get(action, "")
    return IntakeOutcome(
        opportunity_id,
        action,
        stage,
        stage_from,
        reason=reason,
        previous_status=result.previous_status if result.restarted else None,
        start=result,
    )


async def take_all(
    client: Client,
    stages: dict[str, str | None],
    *,
    concurrency: int = 32,
    unchanged: set[str] | frozenset[str] = frozenset(),
    **kwargs,
) -> dict[str, IntakeOutcome | BaseException]:
    """`take` for each opportunity, `concurrency` at a time (Salesforce gives up on a receiver
    that is slow to answer, and a slow answer means a redelivery). The answer is per
    opportunity, in the given order: its outcome, or the exception it raised (each action is
    idempotent, so the caller may release just the failed ones for the redelivery)."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(opp: str, stage: str | None) -> IntakeOutcome:
        async with gate:
            return await take(client, opp, stage, unchanged=opp in unchanged, **kwargs)

    results = await asyncio.gather(*(one(o, s) for o, s in stages.items()), return_exceptions=True)
    return dict(zip(stages, results))
