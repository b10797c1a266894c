"""Credit notes end to end (issue 14, item 2), on the real stack: dev server, sandboxes, worker,
the q2c API app. A fixed-fee milestone is invoiced (20,000.00 GBP); stewards credit part of it
through the JSON API, the CLI and the console; each credit is one ERP `creditMemo` applied to
the invoice (a retried request creates none), over-crediting is refused field by field with
nothing written, and the CRM, the ledger and the engagement's totals are net of the credits.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

from q2c.cli import main as cli
from q2c.domain.stage import EngagementStage
from q2c.ledger.credits import CreditNotes
from q2c.vendors.netsuite.client import NetSuiteClient
from tests.deals import create_deal
from tests.e2e.test_interfaces_steward_actions import STEWARD, VIEWER, audit_of, http, q2c, wait_until
from tests.engagement_helpers import status_of, wait_for_stage
from tests.fixtures.console import STEWARD_USER

D = Decimal


async def _invoiced_milestone(stack, account_name: str):
    """A fixed-fee engagement whose first milestone (20,000.00 GBP) is invoiced."""
    async with stack.crm.client() as crm:
        deal = await create_deal(crm, billing_model="Fixed Fee", region="UK", account_name=account_name)
    opp = deal.opportunity_id
    await cli.start(stack.client, opp, task_queue=stack.settings.task_queue)
    active = await wait_for_stage(stack.client, opp, EngagementStage.ACTIVE, timeout=90)
    first = active.engagement.milestones[0].key
    result = await q2c(stack, "milestone", "accept", opp, first, "--by", "paula")
    assert result.exit_code == 0, result.output
    st = await wait_until(stack.client, opp, lambda s: len(s.invoices) == 1, what="the milestone invoice")
    return opp, st.invoices[0]


def _memos(erp, invoice_erp_id: str) -> list[dict]:
    return sorted(
        (m for m in erp.records("creditMemo") if (m.get("createdFrom") or {}).get("id") == invoice_erp_id),
        key=lambda m: int(m["id"]),
    )


async def _crm_money(stack, opp: str) -> tuple[Decimal, Decimal]:
    async with stack.crm.client() as crm:
        record = await crm.get_record("Opportunity", opp, fields=["Amount_Paid__c", "Open_Balance__c"])
    return D(str(record["Amount_Paid__c"])), D(str(record["Open_Balance__c"]))


async def test_partial_credits_from_api_cli_and_console_applied_once_and_net_everywhere(console_stack):
    stack = console_stack
    opp, invoice = await _invoiced_milestone(stack, "Credit Note Partners Ltd")
    assert (invoice.total, invoice.currency) == (D("20000.00"), "GBP")
    api = f"/api/engagements/{opp}/credits"

    async with http(stack) as h:
        # over-crediting, a zero amount, no reason, a stranger's invoice: refused field by field
        r = await h.post(
            api, headers=STEWARD, json={"invoice": invoice.external_id, "amount": "20000.01", "reason": "x"}
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["amount"]
        assert (
            "exceeds what invoice" in r.json()["errors"][0]["reason"] and "20000.00" in r.json()["errors"][0]["reason"]
        )
        r = await h.post(api, headers=STEWARD, json={"invoice": "inv-nope", "amount": "0", "reason": " "})
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["reason"]  # not sent
        long = {"invoice": invoice.external_id, "amount": "1", "reason": "r" * 1001}  # never cut to fit the ledger
        r = await h.post(api, headers=STEWARD, json=long)
        assert r.status_code == 422 and r.json()["errors"] == [
            {"field": "reason", "reason": "at most 1000 characters (1001 given)"}
        ]
        r = await h.post(api, headers=STEWARD, json={"invoice": "inv-nope", "amount": "0", "reason": "x"})
        assert r.status_code == 422  # the engagement's validator
        assert sorted(e["field"] for e in r.json()["errors"]) == ["amount", "invoice"]
        r = await h.post(api, headers=STEWARD, json={"invoice": invoice.external_id, "amount": 10.5, "reason": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"  # never a float
        r = await h.post(api, headers=VIEWER, json={"invoice": invoice.external_id, "amount": "1", "reason": "x"})
        assert r.status_code == 403
        assert _memos(stack.erp, invoice.erp_id) == []  # nothing written

        # a partial credit, then the same request again (a client's retry): one memo
        body = {"invoice": invoice.external_id, "amount": "2500.00", "reason": "workshop 3 not delivered"}
        key = {**STEWARD, "Idempotency-Key": "credit-dispute-17"}
        first = await h.post(api, headers=key, json=body)
        assert first.status_code == 200, first.text
        again = await h.post(api, headers=key, json=body)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert first.headers["X-Q2C-Update-Id"] == again.headers["X-Q2C-Update-Id"]
    note = first.json()["credit_note"]
    assert (D(note["amount"]), note["currency"], D(note["invoice_open_balance"])) == (
        D("2500.00"),
        "GBP",
        D("17500.00"),
    )
    memos = _memos(stack.erp, invoice.erp_id)
    assert len(memos) == 1
    memo = memos[0]
    assert memo["externalId"] == note["external_id"] and memo["externalId"].startswith("cm-")
    assert memo["tranId"] == note["number"] and memo["tranId"].startswith("CM")
    assert (D(str(memo["total"])), D(str(memo["applied"])), D(str(memo["unapplied"])), memo["status"]) == (
        D("2500.00"),
        D("2500.00"),
        D("0"),
        "Fully Applied",
    )
    assert [(i["doc"]["id"], D(str(i["amount"]))) for i in memo["apply"]["items"]] == [(invoice.erp_id, D("2500.00"))]
    erp_invoice = stack.erp.record_by_eid("invoice", invoice.external_id)
    assert (
        D(str(erp_invoice["total"])),
        D(str(erp_invoice["amountPaid"])),
        D(str(erp_invoice["amountRemaining"])),
    ) == (
        D("20000.00"),
        D("0"),
        D("17500.00"),
    )

    # the CLI, by the invoice's ERP number; a re-run of the same command applies once
    args = ["credit", opp, invoice.number, "--amount", "1000", "--reason", "travel billed twice", "--by", "carla"]
    result = await q2c(stack, *args)
    assert result.exit_code == 0, result.output
    assert "accepted: credit memo CM" in result.output and "1000 GBP" in result.output and "16500.00" in result.output
    rerun = await q2c(stack, *args)
    assert rerun.exit_code in (0, 1), rerun.output  # the first outcome again, or "already applied"
    assert len(_memos(stack.erp, invoice.erp_id)) == 2
    # more than it still owes (16,500.00): refused, nothing written
    over = await q2c(stack, "credit", opp, invoice.number, "--amount", "16500.01", "--reason", "too much")
    assert over.exit_code == 1 and "amount:" in over.output and "16500.00" in over.output
    assert len(_memos(stack.erp, invoice.erp_id)) == 2

    # the console: the form sits with the invoices; a missing reason is named next to its field
    async with http(stack) as h:
        page = (await h.get(f"/console/engagements/{opp}", headers=STEWARD)).text
        assert 'id="credit-form"' in page and "Credit notes" in page and "workshop 3 not delivered" in page
        request_id = re.search(
            rf'action="/console/engagements/{opp}/credits" id="credit-form">'
            r'<input type="hidden" name="csrf_token" value="[^"]*">'
            r'<input type="hidden" name="request_id" value="([^"]+)"',
            page,
        ).group(1)
        form = {"invoice": invoice.external_id, "amount": "500.00", "reason": "", "request_id": request_id}
        r = await h.post(f"/console/engagements/{opp}/credits", headers=STEWARD, data=form)
        assert r.status_code == 422 and 'id="err-credit-reason"' in r.text
        form["reason"] = "goodwill, CO-31"
        r = await h.post(f"/console/engagements/{opp}/credits", headers=STEWARD, data=form)
        assert r.status_code == 303, r.text
        r = await h.post(f"/console/engagements/{opp}/credits", headers=STEWARD, data=form)  # a browser resend
        assert r.status_code in (303, 422)
        viewer_page = (await h.get(f"/console/engagements/{opp}", headers=VIEWER)).text
        assert 'id="credit-form"' not in viewer_page

    # three credits, 4,000.00 in all: ERP, engagement, ledger and CRM agree, net of them
    memos = _memos(stack.erp, invoice.erp_id)
    assert [D(str(m["total"])) for m in memos] == [D("2500.00"), D("1000.00"), D("500.00")]
    assert len({m["tranId"] for m in memos}) == 3
    erp_invoice = stack.erp.record_by_eid("invoice", invoice.external_id)
    assert D(str(erp_invoice["amountRemaining"])) == D("16000.00")
    st = await status_of(stack.client, opp)
    assert (st.totals.billed, st.totals.credited, st.totals.net_billed, st.totals.collected) == (
        D("20000.00"),
        D("4000.00"),
        D("16000.00"),
        D("0"),
    )
    inv = st.invoice(invoice.external_id)
    assert (inv.total, inv.credited, inv.amount_paid, inv.open_balance) == (
        D("20000.00"),
        D("4000.00"),
        D("0"),
        D("16000.00"),
    )
    assert [(c.amount, c.reason, c.requested_by) for c in st.credit_notes] == [
        (D("2500.00"), "workshop 3 not delivered", STEWARD_USER),
        (D("1000"), "travel billed twice", "carla"),
        (D("500.00"), "goodwill, CO-31", STEWARD_USER),
    ]
    rows = CreditNotes(stack.ledger.engine).for_opportunity(opp)
    assert [(r.external_id, r.erp_id, r.number, r.amount) for r in rows] == [
        (m["externalId"], m["id"], m["tranId"], D(str(m["total"]))) for m in memos
    ]
    assert CreditNotes(stack.ledger.engine).credited_by_invoice([invoice.external_id]) == {
        invoice.external_id: D("4000.00")
    }
    ledger_invoice = stack.ledger.get_invoice(invoice.external_id)
    assert (ledger_invoice.total, ledger_invoice.amount_paid, ledger_invoice.open_balance) == (
        D("20000.00"),
        D("0"),
        D("16000.00"),
    )
    assert await _crm_money(stack, opp) == (D("0"), D("16000.00"))
    ops = audit_of(stack, opp)
    assert ("credit_invoice", "ok", "carla") in ops and ("credit_invoice", "ok", STEWARD_USER) in ops


async def test_erp_refuses_a_credit_once_the_invoice_is_paid(console_stack):
    """The customer pays what is left after a credit before the engagement has read the
    payment: the engagement's own check passes, the ERP refuses to apply more than is due, and
    only that request fails (field `amount`, the ERP's message); nothing is written."""
    stack = console_stack
    opp, invoice = await _invoiced_milestone(stack, "Credit Then Pay Ltd")
    async with http(stack) as h:
        r = await h.post(
            f"/api/engagements/{opp}/credits",
            headers=STEWARD,
            json={"invoice": invoice.number, "amount": "5000.00", "reason": "scope reduced"},
        )
        assert r.status_code == 200, r.text
    async with NetSuiteClient(stack.settings.erp, timeout=10) as erp:
        await erp.record_payment(invoice.erp_id, None, invoice.period_end)  # the open balance, 15,000.00
    erp_invoice = stack.erp.record_by_eid("invoice", invoice.external_id)
    assert (D(str(erp_invoice["amountPaid"])), D(str(erp_invoice["amountRemaining"])), erp_invoice["status"]) == (
        D("15000.00"),
        D("0"),
        "Paid In Full",
    )
    async with http(stack) as h:
        r = await h.post(
            f"/api/engagements/{opp}/credits",
            headers=STEWARD,
            json={"invoice": invoice.external_id, "amount": "0.01", "reason": "after payment"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "amount"
        assert "the ERP refused" in r.json()["errors"][0]["reason"]
        assert "exceeds the amount remaining" in r.json()["errors"][0]["reason"]
    assert len(_memos(stack.erp, invoice.erp_id)) == 1
    st = await status_of(stack.client, opp)
    assert (st.stage, st.totals.credited, len(st.credit_notes)) == (EngagementStage.ACTIVE, D("5000.00"), 1)


async def test_credit_with_rebill_goes_on_the_next_invoice_once_and_the_crm_is_net(console_stack):
    """A partial credit with a corrected line: the line is billed on the next invoice (the next
    milestone's), once, even when the request is sent again; re-billing more than was credited
    is refused; the CRM shows gross billed, credited and net billed exactly."""
    stack = console_stack
    opp, invoice = await _invoiced_milestone(stack, "Rebill Partners Ltd")
    api = f"/api/engagements/{opp}/credits"
    async with http(stack) as h:
        too_much = {
            "invoice": invoice.external_id,
            "amount": "500.00",
            "reason": "workshop 3 shortened",
            "rebill": [{"description": "Workshop 3 (half day)", "quantity": "1", "rate": "500.01"}],
        }
        r = await h.post(api, headers=STEWARD, json=too_much)
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["rebill"], r.text
        assert "more than the 500.00 credited" in r.json()["errors"][0]["reason"]
        bad = {**too_much, "rebill": [{"description": " ", "quantity": "0", "rate": "x"}]}
        r = await h.post(api, headers=STEWARD, json=bad)
        assert r.status_code == 422
        assert sorted(e["field"] for e in r.json()["errors"]) == [
            "rebill[0].description",
            "rebill[0].quantity",
            "rebill[0].rate",
        ]
        body = {
            "invoice": invoice.external_id,
            "amount": "2500.00",
            "reason": "workshop 3 delivered as a half day",
            "rebill": [{"description": "Workshop 3 (half day)", "quantity": "0.5", "rate": "2000"}],
        }
        key = {**STEWARD, "Idempotency-Key": f"rebill-{opp}"}
        first = await h.post(api, headers=key, json=body)
        assert first.status_code == 200, first.text
        again = await h.post(api, headers=key, json=body)
        assert again.status_code == 200 and again.json() == first.json()
    st = await status_of(stack.client, opp)
    assert [(line.amount, line.quantity) for line in st.pending_rebill] == [(D("1000.00"), D("0.5"))]
    assert "re-billed after credit memo CM" in st.pending_rebill[0].description
    second = st.engagement.milestones[1].key
    result = await q2c(stack, "milestone", "accept", opp, second, "--by", "paula")
    assert result.exit_code == 0, result.output
    st = await wait_until(stack.client, opp, lambda s: len(s.invoices) == 2, what="the second milestone invoice")
    assert st.pending_rebill == []
    assert st.invoices[1].total == D("46000.00")  # 45,000.00 milestone + 1,000.00 re-billed
    erp_invoice = stack.erp.record_by_eid("invoice", st.invoices[1].external_id)
    amounts = sorted(D(str(i["amount"])) for i in erp_invoice["item"]["items"])
    assert amounts == [D("1000.00"), D("45000.00")]
    assert (st.totals.billed, st.totals.credited, st.totals.net_billed) == (
        D("66000.00"),
        D("2500.00"),
        D("63500.00"),
    )
    async with stack.crm.client() as crm:
        for _ in range(100):
            record = await crm.get_record(
                "Opportunity", opp, fields=["Amount_Billed__c", "Amount_Credited__c", "Net_Billed__c"]
            )
            if record["Amount_Billed__c"] is not None and D(str(record["Amount_Billed__c"])) == D("66000.00"):
                break
            await asyncio.sleep(0.2)
    assert (
        D(str(record["Amount_Billed__c"])),
        D(str(record["Amount_Credited__c"])),
        D(str(record["Net_Billed__c"])),
    ) == (D("66000.00"), D("2500.00"), D("63500.00"))
