"""The engagement's failure model and its one door for change (deterministic workflow code).

Failure model, the middle path between "retry forever" and "fail for good":

- transient vendor errors (5xx, 429, timeouts) are retried by Temporal with back-off, without
  limit: the vendor will come back;
- an unexpected error (a bug, a record we cannot map) is retried a bounded number of times by
  the worker's activity interceptor (`activities/bounded.py`), then raised non-retryable;
- anything non-retryable *parks* the engagement: stage `AwaitingSteward`, a typed `PauseReason`
  naming the system, the operation, the vendor's own code and message and the owning queue,
  until a steward fixes the cause and sends `retry`. The step then runs again, keyed by the
  same external IDs, so nothing is created twice. Nothing ends the engagement as Failed.

One door: every state-changing path (Updates, the CRM change-order signal, the period close)
runs inside `Steps.door`, an `asyncio.Lock` (deterministic FIFO inside a workflow). Each one
re-checks its rules against the state it finds once inside, so two change orders, or a change
order and a period close, never both act on the same stale picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from q2c.delivery.activities import DeliveryActivities
    from q2c.delivery.inputs import CrmStatusInput
    from q2c.domain.stage import EngagementStage
    from q2c.domain.validation import FieldIssue
    from q2c.engagement.messages import (
        EngagementStatus,
        PauseKind,
        PauseReason,
        RetryInput,
        StewardAction,
        StewardQueue,
    )
    from q2c.engagement.visibility import set_stage, set_steward_queue

# Vendor calls: transient failures retry without limit, with back-off (the activity
# interceptor turns an unexpected error into a non-retryable one after a few attempts).
VENDOR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60)
)
VENDOR_TIMEOUT = timedelta(seconds=60)
# An activity that heartbeats while it waits on a vendor (`heartbeats` on its method, see
# q2c.provisioning.activities) is scheduled with this heartbeat timeout: a killed worker's
# attempt is retried after ~20 s instead of the 60 s start-to-close. Activity options are not
# replayed as commands: changing them needs no patch (tests/replay says so).
VENDOR_HEARTBEAT = timedelta(seconds=20)
# Mirroring the stage to the CRM is informative: a few attempts, never a reason to park.
MIRROR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
MIRRORED_STAGES = {
    EngagementStage.AWAITING_STEWARD,
    EngagementStage.ACTIVE,
    EngagementStage.COLLECTING,
    EngagementStage.CLOSED,
    EngagementStage.CANCELLED,
}

# who owns a vendor's "no", by system
QUEUE_BY_SYSTEM = {
    "erp": StewardQueue.FINANCE_OPS,
    "psa": StewardQueue.PMO,
    "crm": StewardQueue.MASTER_DATA,
    "q2c": StewardQueue.FINANCE_OPS,
}
KIND_BY_SYSTEM = {"erp": PauseKind.ERP_REJECTED, "psa": PauseKind.PSA_REJECTED, "crm": PauseKind.CRM_REJECTED}


async def execute(
    fn: Callable, arg: Any, summary: str, *, timeout: timedelta = VENDOR_TIMEOUT, heartbeat: timedelta | None = None
) -> Any:
    """One vendor activity with q2c's retry policy: transient failures retry without limit;
    what Temporal stops retrying arrives as ActivityError for the caller to park or report."""
    if heartbeat is None and getattr(fn, "heartbeats", False):
        heartbeat = VENDOR_HEARTBEAT
    return await workflow.execute_activity_method(
        fn, arg, start_to_close_timeout=timeout, heartbeat_timeout=heartbeat, retry_policy=VENDOR_RETRY, summary=summary
    )


class Abandoned(Exception):
    """A parked step will not be retried (the engagement was cancelled while it waited)."""


def vendor_failure(err: ActivityError, system: str, operation: str) -> PauseReason:
    """The typed pause for a failed step: the vendor's own code and message when it gave one."""
    cause = err.cause
    code: str | None = None
    message = str(cause or err)
    if isinstance(cause, ApplicationError):
        message = cause.message
        code = cause.type
        details = cause.details[0] if cause.details else None
        if isinstance(details, dict):
            system = str(details.get("system") or system)
            operation = str(details.get("operation") or operation)
            errors = details.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                code = str(errors[0].get("code") or code)
    unexpected = isinstance(cause, ApplicationError) and cause.type == "UnexpectedError"
    kind = PauseKind.UNEXPECTED_ERROR if unexpected else KIND_BY_SYSTEM.get(system, PauseKind.ERP_REJECTED)
    queue = QUEUE_BY_SYSTEM.get(system, StewardQueue.FINANCE_OPS)
    return PauseReason(
        kind=kind,
        queue=queue,
        action=StewardAction.RETRY,
        system=system,
        operation=operation,
        vendor_code=code,
        vendor_message=message[:1000],
        fields=[FieldIssue(field=f"{system}.{operation}", reason=message[:500])],
        message=f"{system.upper()} {operation} failed: {message[:500]}",
    )


class Steps:
    """Vendor calls that park instead of failing, the steward's answer to a pause, and the door."""

    def __init__(self, status: EngagementStatus) -> None:
        self.status = status
        self.door = asyncio.Lock()
        self._retry: RetryInput | None = None
        self._mirrored: EngagementStage | None = None

    # --- calls ------------------------------------------------------------------------
    async def call(
        self,
        fn: Callable,
        arg: Any,
        summary: str,
        *,
        system: str,
        operation: str,
        timeout: timedelta = VENDOR_TIMEOUT,
        heartbeat: timedelta | None = None,
        abandon_when: Callable[[], bool] | None = None,
    ) -> Any:
        """Run one activity; a non-retryable failure parks the engagement until `retry`, then the
        activity runs again (its writes are keyed by external IDs, so this is safe).
        `abandon_when`: stop waiting (raise Abandoned) when this becomes true, e.g. cancelled."""
        while True:
            try:
                return await execute(fn, arg, summary, timeout=timeout, heartbeat=heartbeat)
            except ActivityError as err:
                pause = vendor_failure(err, system, operation)
            if not await self.park(pause, abandon_when=abandon_when):
                raise Abandoned(pause.message)

    # --- pauses -----------------------------------------------------------------------
    async def park(
        self,
        pause: PauseReason,
        *,
        until: Callable[[], bool] | None = None,
        abandon_when: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait in AwaitingSteward until a steward acts: `retry` (for a RETRY pause), or `until`
        becomes true (e.g. every milestone invoiced or waived). Returns False when
        `abandon_when` ended the wait instead. The stage before the pause comes back after it."""
        st = self.status
        # a pause inside a pause (an invoice rejected while the PMO accepts milestones at the end
        # date): the outer one comes back afterwards
        outer = st.pause if st.stage is EngagementStage.AWAITING_STEWARD else None
        resume = pause.resume_stage or (st.stage if outer is None else EngagementStage.AWAITING_STEWARD)
        pause.resume_stage = resume if outer is None else (outer.resume_stage or EngagementStage.ACTIVE)
        pause.since = workflow.now()
        st.pause = pause
        self._retry = None
        set_stage(st, EngagementStage.AWAITING_STEWARD, f"[{pause.queue.value}] {pause.message}")
        set_steward_queue(pause.queue.value)
        await self.mirror_stage()

        def answered() -> bool:
            return (self._retry is not None and pause.action is StewardAction.RETRY) or bool(until and until())

        await workflow.wait_condition(lambda: answered() or bool(abandon_when and abandon_when()))
        done = answered()
        retried, self._retry = self._retry, None
        by = f" (retried by {retried.requested_by}{': ' + retried.note if retried.note else ''})" if retried else ""
        if outer is not None:
            st.pause = outer
            set_stage(st, EngagementStage.AWAITING_STEWARD, f"[{outer.queue.value}] {outer.message}")
            set_steward_queue(outer.queue.value)
        else:
            st.pause = None
            set_steward_queue(None)
            set_stage(st, resume, f"Resumed after: {pause.message[:300]}{by}")
            await self.mirror_stage()
        return done

    def retry(self, request: RetryInput) -> None:
        self._retry = request

    def retry_issues(self) -> list[FieldIssue]:
        pause = self.status.pause
        if pause is None or self.status.stage is not EngagementStage.AWAITING_STEWARD:
            return [
                FieldIssue(
                    field="stage", reason=f"the engagement is {self.status.stage.value}, not parked on a failed step"
                )
            ]
        if pause.action is not StewardAction.RETRY:
            return [
                FieldIssue(
                    field="stage",
                    reason=f"the engagement waits for {pause.action.value} ({pause.kind.value}), not for a retry",
                )
            ]
        return []

    # --- the CRM's view of the stage ----------------------------------------------------
    async def mirror_stage(self) -> None:
        """`Q2C_Status__c` follows the stage (after intake): a few attempts, never a pause."""
        st = self.status
        if st.stage not in MIRRORED_STAGES or st.stage is self._mirrored or st.engagement is None:
            return
        self._mirrored = st.stage
        try:
            await workflow.execute_activity_method(
                DeliveryActivities.write_crm_status,
                CrmStatusInput(opportunity_id=st.opportunity_id, status=st.stage.value),
                start_to_close_timeout=VENDOR_TIMEOUT,
                heartbeat_timeout=VENDOR_HEARTBEAT,
                retry_policy=MIRROR_RETRY,
                summary=f"CRM: Q2C status {st.stage.value}",
            )
        except ActivityError as err:
            workflow.logger.warning("CRM status %s not written: %s", st.stage.value, err.cause or err)
            self._mirrored = None
