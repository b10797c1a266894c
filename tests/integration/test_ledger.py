"""The q2c ledger on SQLite and PostgreSQL: idempotent writes, exact money, concurrent
writers, the audit hook on a real connector call, and the exceptions CLI."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from q2c.cli.exceptions import exceptions_app, format_exceptions
from q2c.domain.delivery import Invoice, InvoiceStatus, PaymentStatus, PostedTime
from q2c.ledger.audit import audit_hook
from q2c.ledger.config import LEDGER_URL_ENV, ledger_url
from q2c.ledger.models import ERP_REJECTED, NO_RATE, PERIOD_CLOSED
from q2c.ledger.store import Ledger
from q2c.vendors.calls import CallRecord

OPP = "006LEDGER0000001"


def posted(
    psa_id: str, *, rate: str | None = "150.00", minutes: int = 60, billable: bool = True, bill_id: str | None = None
) -> PostedTime:
    return PostedTime(
        psa_id=psa_id,
        erp_time_bill_id=bill_id or f"tb-{psa_id}",
        role="Consultant",
        date_performed=date(2027, 1, 12),
        minutes=minutes,
        billable=billable,
        rate=Decimal(rate) if rate is not None else None,
        currency="USD",
    )


def invoice(external_id: str = f"inv-{OPP}-2027-01", total: str = "1500.00", **kw) -> Invoice:
    return Invoice(
        external_id=external_id,
        period_start=date(2027, 1, 1),
        period_end=date(2027, 1, 31),
        total=Decimal(total),
        currency="USD",
        **kw,
    )


def call(correlation_id: str = "corr-1", **kw) -> CallRecord:
    base = dict(
        correlation_id=correlation_id,
        system="erp",
        operation="post_time",
        method="POST",
        url="/services/rest/record/v1/timeBill",
        status=204,
        outcome="ok",
        duration_ms=12.5,
    )
    return CallRecord(**{**base, **kw})


# --- idempotent writes ---------------------------------------------------------------------


def test_same_posted_time_twice_is_one_row(ledger):
    ledger.record_posted_time([posted("te-1"), posted("te-2")], OPP)
    ledger.record_posted_time([posted("te-1", bill_id="tb-new")], OPP)
    rows = ledger.posted_time(OPP)
    assert [r.psa_id for r in rows] == ["te-1", "te-2"]
    assert rows[0].erp_time_bill_id == "tb-new"
    assert ledger.is_posted("te-1") and not ledger.is_posted("te-9")

    assert ledger.mark_time_invoiced(["te-1"], "inv-a") == 1
    ledger.record_posted_time([posted("te-1")], OPP)  # a replay does not forget the invoice
    assert {r.psa_id: r.invoice_external_id for r in ledger.posted_time(OPP)} == {"te-1": "inv-a", "te-2": None}
    assert [r.psa_id for r in ledger.posted_time(OPP, uninvoiced_only=True)] == ["te-2"]
    assert rows[0].to_domain().rate == Decimal("150.00")


def test_same_invoice_twice_is_one_row_and_payment_updates(ledger):
    ledger.record_invoice(invoice(), OPP)
    ledger.record_invoice(invoice(erp_id="9001", number="INV-0042"), OPP)
    ledger.record_invoice(invoice(total="1600.00"), OPP)  # no ERP id this time: keep the known one
    [row] = ledger.invoices(OPP)
    assert (row.erp_id, row.number, row.total, row.open_balance) == (
        "9001",
        "INV-0042",
        Decimal("1600"),
        Decimal("1600"),
    )

    assert ledger.update_payment(
        PaymentStatus(
            invoice_erp_id="9001",
            total=Decimal("1600.00"),
            amount_paid=Decimal("600.10"),
            open_balance=Decimal("999.90"),
            currency="USD",
            days_overdue=3,
            status=InvoiceStatus.PARTIALLY_PAID,
        )
    )
    assert not ledger.update_payment(
        PaymentStatus(
            invoice_erp_id="nope", total=Decimal(1), amount_paid=Decimal(0), open_balance=Decimal(1), currency="USD"
        )
    )
    ledger.record_invoice(invoice(total="1600.00", erp_id="9001"), OPP)  # re-record keeps collection
    row = ledger.get_invoice(f"inv-{OPP}-2027-01")
    assert (row.status, row.amount_paid, row.open_balance, row.days_overdue) == (
        "partially_paid",
        Decimal("600.10"),
        Decimal("999.90"),
        3,
    )
    assert len(ledger.invoices()) == 1


def test_exception_upsert_counts_attempts_and_resolves(ledger):
    first = ledger.upsert_exception(OPP, "engagement-x", "te-7", PERIOD_CLOSED, "period Jan 2027 is closed")
    again = ledger.upsert_exception(OPP, "engagement-x", "te-7", NO_RATE, "no rate for role Architect")
    ledger.upsert_exception("006OTHER", "engagement-y", "te-8", ERP_REJECTED, "rejected")
    assert first == again == "exc-te-7"
    exc = ledger.get_exception("exc-te-7")
    assert (exc.attempts, exc.reason_code, exc.message, exc.status) == (
        2,
        NO_RATE,
        "no rate for role Architect",
        "open",
    )
    assert exc.last_seen >= exc.first_seen and exc.first_seen.tzinfo is not None
    assert [e.id for e in ledger.list_exceptions(OPP)] == ["exc-te-7"]
    assert len(ledger.list_exceptions()) == 2

    assert ledger.resolve_exceptions(["te-7", "te-unknown"]) == 1
    assert ledger.resolve_exceptions(["te-7"]) == 0
    assert [e.id for e in ledger.list_exceptions(status="resolved")] == ["exc-te-7"]
    assert ledger.get_exception("exc-te-7").resolved_at is not None
    assert [e.id for e in ledger.list_exceptions(status="all")] == ["exc-te-7", "exc-te-8"]

    ledger.upsert_exception(OPP, "engagement-x", "te-7", PERIOD_CLOSED, "closed again")  # re-opens
    exc = ledger.get_exception("exc-te-7")
    assert (exc.status, exc.attempts, exc.resolved_at) == ("open", 3, None)
    assert ledger.get_exception("exc-none") is None
    with pytest.raises(ValueError):
        ledger.list_exceptions(status="closed")


def test_xref_is_upserted_by_entity_system_key(ledger):
    ledger.record_xref(OPP, "customer", "erp", f"cust-{OPP}", "101")
    ledger.record_xref(OPP, "customer", "erp", f"cust-{OPP}", "102")
    ledger.record_xref(OPP, "workspace", "psa", f"ws-{OPP}", "555")
    assert ledger.xref("customer", "erp", f"cust-{OPP}") == "102"
    assert ledger.xref("customer", "crm", f"cust-{OPP}") is None
    assert [(x.entity, x.system, x.system_id) for x in ledger.xrefs(OPP)] == [
        ("customer", "erp", "102"),
        ("workspace", "psa", "555"),
    ]
    with pytest.raises(ValueError):
        ledger.record_xref(OPP, "customer", "sap", "k", "1")


# --- money stays exact ------------------------------------------------------------------------


def test_decimals_are_exact(ledger):
    ledger.record_posted_time(
        [
            posted("te-a", rate="1234.5678"),
            posted("te-b", rate="0.1"),
            posted("te-c", rate="0.2"),
            posted("te-d", rate=None, billable=False),
        ],
        OPP,
    )
    rates = {r.psa_id: r.rate for r in ledger.posted_time(OPP)}
    assert rates == {"te-a": Decimal("1234.5678"), "te-b": Decimal("0.1"), "te-c": Decimal("0.2"), "te-d": None}
    assert str(rates["te-a"]) == "1234.5678"
    assert rates["te-b"] + rates["te-c"] == Decimal("0.3")  # where 0.1 + 0.2 != 0.3 in float
    # the posted amount is the entry's by the one rule (60 min x rate, rounded once to the cent)
    amounts = {r.psa_id: r.amount for r in ledger.posted_time(OPP)}
    assert amounts == {"te-a": Decimal("1234.57"), "te-b": Decimal("0.10"), "te-c": Decimal("0.20"), "te-d": None}
    assert sum((r.billed_amount for r in ledger.posted_time(OPP)), Decimal(0)) == Decimal("1234.87")

    big = "99999999999999.9999"  # NUMERIC(18,4)'s largest; a float cannot hold it
    ledger.record_invoice(invoice("inv-big", total=big), OPP)
    ledger.record_invoice(invoice("inv-tenth", total="0.1"), OPP)
    totals = {i.external_id: i.total for i in ledger.invoices(OPP)}
    assert totals["inv-big"] == Decimal(big) and str(totals["inv-big"]) == big
    assert totals["inv-tenth"] * 3 == Decimal("0.3")
    # What is stored is a real decimal, not text that only round-trips in Python.
    if ledger.engine.dialect.name == "postgresql":
        with ledger.engine.connect() as conn:
            assert conn.execute(text("select sum(rate) from q2c_posted_time")).scalar() == Decimal("1234.8678")


def test_posted_amount_is_stored_as_posted(ledger):
    """61 min at 500.09: the row holds 508.42 (the ERP's figure), and the rate exactly as accepted."""
    ledger.record_posted_time(
        [
            posted("te-61", rate="500.09", minutes=61),
            posted("te-given", rate="500.09", minutes=61).model_copy(update={"amount": Decimal("508.42")}),
        ],
        OPP,
    )
    rows = {r.psa_id: r for r in ledger.posted_time(OPP)}
    assert (rows["te-61"].rate, rows["te-61"].amount) == (Decimal("500.09"), Decimal("508.42"))
    assert rows["te-61"].to_domain() == posted("te-61", rate="500.09", minutes=61)
    assert ledger.posted_time_for_bills(["tb-te-given"])[0].amount == Decimal("508.42")
    # every rate q2c.domain.billing.rate_issue lets in (4 places) is stored exactly
    ledger.record_posted_time([posted("te-4dp", rate="99999999999999.9999", minutes=1)], OPP)
    assert {r.psa_id: r.rate for r in ledger.posted_time(OPP)}["te-4dp"] == Decimal("99999999999999.9999")
    if ledger.engine.dialect.name == "postgresql":
        with ledger.engine.connect() as conn:
            scales = dict(
                conn.execute(
                    text(
                        "select column_name, numeric_scale from information_schema.columns "
                        "where table_name = 'q2c_posted_time' and column_name in ('rate', 'amount')"
                    )
                ).all()
            )
        from q2c.domain.billing import MAX_RATE_PLACES

        assert scales == {"rate": MAX_RATE_PLACES, "amount": MAX_RATE_PLACES}


def test_a_ledger_from_before_posted_amounts_gains_the_column(ledger):
    """create_all on a ledger whose q2c_posted_time has no amount column adds it; rows written
    before read their amount by the rule."""
    ledger.record_posted_time([posted("te-new", rate="500.09", minutes=61)], OPP)
    with ledger.engine.begin() as conn:
        conn.execute(text("ALTER TABLE q2c_posted_time DROP COLUMN amount"))
    try:
        ledger.create_all()
        with ledger.engine.begin() as conn:
            conn.execute(text("UPDATE q2c_posted_time SET amount = NULL"))
        [row] = ledger.posted_time(OPP)
        assert row.amount is None and row.billed_amount == Decimal("508.42")
        assert row.to_domain().amount == Decimal("508.42")
    finally:
        ledger.create_all()  # the column is there for whatever runs next


def test_money_is_never_rounded_silently(ledger):
    with pytest.raises(Exception, match="decimal places"):
        ledger.record_posted_time([posted("te-x", rate="0.00001")], OPP)
    with pytest.raises(Exception, match="float"):
        ledger.record_invoice(invoice().model_copy(update={"total": 0.1}), OPP)
    assert ledger.posted_time(OPP) == [] and ledger.invoices(OPP) == []


# --- concurrent writers --------------------------------------------------------------------------


def test_concurrent_writers_do_not_duplicate(ledger):
    threads_n, rounds = 6, 4
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(rounds):
                ledger.record_posted_time([posted("te-c1"), posted(f"te-own-{n}")], OPP)
                ledger.record_invoice(invoice(erp_id="77"), OPP)
                ledger.upsert_exception(OPP, "engagement-c", "te-bad", PERIOD_CLOSED, f"thread {n}")
                ledger.record_xref(OPP, "project", "erp", f"job-{OPP}", "88")
                ledger.record_api_call(call(f"corr-{n}"))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(r.psa_id for r in ledger.posted_time(OPP)) == sorted(
        ["te-c1", *(f"te-own-{n}" for n in range(threads_n))]
    )
    assert len(ledger.invoices(OPP)) == 1
    assert ledger.get_exception("exc-te-bad").attempts == threads_n * rounds
    assert len(ledger.xrefs(OPP)) == 1
    assert len(ledger.api_calls()) == threads_n * rounds


# --- audit of vendor calls ------------------------------------------------------------------------


def test_api_calls_filter_by_correlation_and_system(ledger):
    ledger.record_api_call(call("c-1"), actor="steward@example.com")
    ledger.record_api_call(
        call(
            "c-1",
            system="psa",
            operation="list_time",
            method="GET",
            status=429,
            outcome="retryable",
            error_code="rate_limit",
        ),
        workflow_id="wf-1",
        attempt=2,
    )
    ledger.record_api_call(call("c-2"))
    assert [c.system for c in ledger.api_calls("c-1")] == ["erp", "psa"]
    [psa] = ledger.api_calls(system="psa")
    assert (psa.status, psa.outcome, psa.error_code, psa.workflow_id, psa.attempt) == (
        429,
        "retryable",
        "rate_limit",
        "wf-1",
        2,
    )
    assert ledger.api_calls("c-1", system="erp")[0].actor == "steward@example.com"
    assert len(ledger.api_calls(workflow_id="wf-1")) == 1 and len(ledger.api_calls(limit=2)) == 2


async def test_audit_hook_records_real_connector_calls(ledger, psa_sandbox):
    from temporalio.testing import ActivityEnvironment

    from q2c.vendors.kantata.client import KantataClient
    from tests.fixtures.psa import psa_settings

    async with KantataClient(psa_settings(psa_sandbox.url), timeout=10.0, audit=audit_hook(ledger)) as client:
        templates = await client.list_templates()
        assert templates
        calls = ledger.api_calls(system="psa")
        assert calls and all(c.outcome == "ok" and c.status == 200 and c.method == "GET" for c in calls)
        assert calls[0].workflow_id is None and calls[0].url.startswith("/api/v1/")

        async def in_activity() -> None:  # the same call made from inside a Temporal activity
            await client.list_roles()

        await ActivityEnvironment().run(in_activity)
        from_activity = [c for c in ledger.api_calls(system="psa") if c.workflow_id]
        assert from_activity and all(
            (c.workflow_id, c.activity_type, c.attempt) == ("test", "unknown", 1) for c in from_activity
        )

    async with KantataClient(
        psa_settings(psa_sandbox.url, token="wrong-token"), timeout=10.0, audit=audit_hook(ledger, actor="ops")
    ) as bad:
        with pytest.raises(Exception):  # noqa: B017
            await bad.list_roles()
    rejected = [c for c in ledger.api_calls(system="psa") if c.actor == "ops"]
    assert rejected and rejected[-1].status == 401 and rejected[-1].outcome == "rejected"


async def test_audit_failure_never_fails_the_call(tmp_path, psa_sandbox, caplog):
    from q2c.vendors.kantata.client import KantataClient
    from tests.fixtures.psa import psa_settings

    broken = Ledger.from_url(f"sqlite:///{tmp_path / 'no-tables.db'}")  # create_all never called
    try:
        async with KantataClient(psa_settings(psa_sandbox.url), timeout=10.0, audit=audit_hook(broken)) as client:
            assert await client.list_templates()
    finally:
        broken.dispose()
    assert "could not audit psa" in caplog.text


# --- configuration -------------------------------------------------------------------------------


def test_ledger_url_from_env_or_state_dir(monkeypatch, tmp_path):
    from q2c.settings import load_settings

    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    monkeypatch.setenv("Q2C_STATE_DIR", str(tmp_path / "state"))
    url = ledger_url(load_settings())
    assert url == f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    fresh = Ledger.from_url(url)
    try:
        fresh.create_all()  # parent dir created, WAL on
        with fresh.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        fresh.dispose()
    monkeypatch.setenv(LEDGER_URL_ENV, "postgresql+psycopg://u@h/db")
    assert ledger_url() == "postgresql+psycopg://u@h/db"


# --- exceptions CLI ---------------------------------------------------------------------------------


def test_exceptions_cli_lists_from_the_ledger(ledger):
    ledger.upsert_exception(OPP, "engagement-x", "te-31", PERIOD_CLOSED, "Posting period Jan 2027 is closed")
    ledger.upsert_exception(OPP, "engagement-x", "te-31", PERIOD_CLOSED, "Posting period Jan 2027 is closed")
    ledger.upsert_exception("006OTHER", "engagement-y", "te-32", NO_RATE, "no rate for role Architect")
    ledger.upsert_exception(OPP, "engagement-x", "te-33", ERP_REJECTED, "done")
    ledger.resolve_exceptions(["te-33"])
    env = {LEDGER_URL_ENV: ledger.url}
    runner = CliRunner()

    result = runner.invoke(exceptions_app, ["list"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:5] == ["ID", "OPPORTUNITY", "ENTRY", "REASON", "STATUS"]
    assert len(lines) == 3 and "exc-te-31" in lines[1] and "PERIOD_CLOSED" in lines[1]
    assert "Posting period Jan 2027 is closed" in lines[1] and " 2 " in lines[1]

    result = runner.invoke(exceptions_app, ["list", "--opportunity", OPP, "--status", "all", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["id"], r["status"], r["attempts"]) for r in rows] == [
        ("exc-te-31", "open", 2),
        ("exc-te-33", "resolved", 1),
    ]

    result = runner.invoke(exceptions_app, ["list", "--status", "resolved", "-o", "006NONE"], env=env)
    assert result.exit_code == 0 and result.output.strip() == "no exceptions"
    result = runner.invoke(exceptions_app, ["list", "--status", "bogus"], env=env)
    assert result.exit_code == 2


def test_format_exceptions_is_a_table(sqlite_ledger):
    assert format_exceptions([]) == "no exceptions"
    sqlite_ledger.upsert_exception(OPP, None, "te-1", TASK := "TASK_UNMAPPED", "x " * 100)
    text_out = format_exceptions(sqlite_ledger.list_exceptions())
    header, row = text_out.splitlines()
    assert TASK in row and row.endswith("…") and len(row) < 200
    assert dataclasses.is_dataclass(call())  # CallRecord stays a plain dataclass for the hook


async def test_audit_rows_written_together_are_each_in_the_ledger_once(ledger, monkeypatch):
    """Group commit: 40 calls finishing at once are all audited, each once, each hook returning
    after its own row is stored, in fewer transactions than calls (SQLite and PostgreSQL)."""
    import asyncio

    writes: list[int] = []
    real = ledger.record_api_calls

    def counting(rows: list[dict]) -> None:
        writes.append(len(rows))
        real(rows)

    monkeypatch.setattr(ledger, "record_api_calls", counting)
    hook = audit_hook(ledger, actor="bench")
    records = [call(correlation_id=f"group-{i}") for i in range(40)]

    async def one(record: CallRecord) -> int:
        await hook(record)
        # the hook has returned: this call's row is already in the ledger
        return len(ledger.api_calls(correlation_id=record.correlation_id))

    seen = await asyncio.gather(*(one(r) for r in records))
    assert seen == [1] * 40
    assert sum(writes) == 40 and len(writes) < 40
    rows = [c for c in ledger.api_calls() if c.correlation_id.startswith("group-")]
    assert sorted(c.correlation_id for c in rows) == sorted(r.correlation_id for r in records)
    assert {c.actor for c in rows} == {"bench"}
