"""Deliberately changed copies of EngagementWorkflow, for proving that replay catches
non-determinism. Registered under the real workflow's name, as a careless deploy would be.

Defined in a module of their own (not in a test module), so the workflow sandbox can import
it like any workflow module; nothing happens at import.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from q2c.delivery.workflow import Delivery
    from q2c.domain.engagement import BillingModel
    from q2c.engagement.messages import EngagementInput, EngagementSummary
    from q2c.engagement.workflow import EngagementWorkflow


class _PauseBeforePosting(Delivery):
    """The period close waits a second before posting time: one timer added in the period
    loop, ahead of the posting activity (say, a "let late approvals settle" idea)."""

    async def _close_period(self, period) -> None:
        await workflow.sleep(timedelta(seconds=1))
        await super()._close_period(period)


@workflow.defn(name="EngagementWorkflow")
class TimerAddedToPeriodClose(EngagementWorkflow):
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        super().__init__(input)
        self._delivery = _PauseBeforePosting(self._status, input.delivery, self._steps)

    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        return await super().run(input)


class _InvoiceBeforePosting(Delivery):
    """The period close reordered: a retainer's invoice issued before the time is posted (two
    activities swapped, same count)."""

    async def _close_period(self, period) -> None:
        if self.engagement.billing_model is BillingModel.RETAINER:
            await self.issue(
                f"inv-{self.opp}-p{period.index:03d}", period.start, period.end, lines=[self._retainer_line(period)]
            )
        await super()._close_period(period)  # posts, then finds the invoice already issued


@workflow.defn(name="EngagementWorkflow")
class RetainerInvoicedBeforePosting(EngagementWorkflow):
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        super().__init__(input)
        self._delivery = _InvoiceBeforePosting(self._status, input.delivery, self._steps)

    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        return await super().run(input)


class _NoMemo(Delivery):
    """The patched change taken out again while engagements that ran it are open (a rollback of
    the code, not of the build): the marker is still asked for, the memo is not written."""

    def _publish_period(self, period, fire_at) -> None:
        return None


@workflow.defn(name="EngagementWorkflow")
class PeriodMemoRemoved(EngagementWorkflow):
    @workflow.init
    def __init__(self, input: EngagementInput) -> None:
        super().__init__(input)
        self._delivery = _NoMemo(self._status, input.delivery, self._steps)

    @workflow.run
    async def run(self, input: EngagementInput) -> EngagementSummary:
        return await super().run(input)
