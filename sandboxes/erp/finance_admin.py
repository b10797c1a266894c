"""Sandbox-only finance controls (not NetSuite API; exempt from faults and the concurrency limit).

- `PUT /__sandbox/accounting-periods/{id}` and `PUT /__sandbox/accounting-periods/by-name/{name}`
  (e.g. `by-name/Jan 2027`) with `{"closed": true|false}`: close or reopen a period (and its
  A/R, A/P and all-locks). Answers the period as the record API renders it.
- `POST /__sandbox/payments` with `{"invoice_id" | "invoice_external_id", "amount"?, "date"?}`:
  the customer pays an invoice. `amount` defaults to the open balance, `date` to the
  invoice's due date (pay late by giving a later date). It records a real `customerPayment`
  through the same validation as the record API (a closed period is a 400). An amount larger
  than the open balance is accepted as NetSuite accepts it: the balance is applied and the
  rest stays `unapplied` on the payment, a credit on the customer's account. Answers
  `{"id", "payment", "applied", "unapplied", "invoice": {"id", "tranId", "total",
  "amountPaid", "amountRemaining", "status", "dueDate"}}`.
- `POST /__sandbox/invoices/{id}/void`: a user voids the invoice in the UI (status `Voided`,
  `voided: true`; lines, amounts and billed timeBills kept). Answers the invoice's summary.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sandboxes.common.faults import ADMIN_PREFIX
from sandboxes.erp import finance, periods
from sandboxes.erp.errors import NetSuiteError
from sandboxes.erp.jsonio import dumps_exact, json_object
from sandboxes.erp.render import render
from sandboxes.erp.store import RecordStore
from sandboxes.erp.validation import amount, validate

JSON = "application/json"


def finance_admin_router(store: RecordStore) -> APIRouter:
    router = APIRouter(prefix=ADMIN_PREFIX, tags=["sandbox-admin"])

    def set_period(request: Request, period: dict | None, key: str, body: dict) -> Response:
        if period is None:
            raise NetSuiteError(404, "RECORD_NOT_FOUND", f"No accounting period {key}.")
        if not isinstance(body.get("closed"), bool):
            raise NetSuiteError(400, "USER_ERROR", 'Expected {"closed": true|false}.', "closed")
        updated = periods.set_closed(store, period, body["closed"])
        base = str(request.base_url).rstrip("/")
        return Response(dumps_exact(render("accountingPeriod", updated, store, base)), media_type=JSON)

    @router.put("/accounting-periods/by-name/{name}")
    async def put_period_by_name(request: Request, name: str) -> Response:
        body = await json_object(request)
        return await run_in_threadpool(lambda: set_period(request, periods.find_by_name(store, name), name, body))

    @router.put("/accounting-periods/{period_id}")
    async def put_period(request: Request, period_id: str) -> Response:
        body = await json_object(request)
        return await run_in_threadpool(
            lambda: set_period(request, store.get("accountingPeriod", period_id), period_id, body)
        )

    @router.post("/payments")
    async def pay(request: Request) -> Response:
        body = await json_object(request)

        def record() -> dict:
            with store.lock:
                if body.get("invoice_id") not in (None, ""):
                    inv = store.get("invoice", str(body["invoice_id"]))
                elif body.get("invoice_external_id"):
                    inv = store.get_by_eid("invoice", str(body["invoice_external_id"]))
                else:
                    raise NetSuiteError(400, "USER_ERROR", "Give invoice_id or invoice_external_id.", "invoice_id")
                if inv is None:
                    raise NetSuiteError(404, "RECORD_NOT_FOUND", "The invoice does not exist.", "invoice_id")
                given = body.get("amount")
                if given in (None, ""):
                    given = finance.remaining_balance(inv)
                payment = amount(given, "amount", positive=True)
                on = body.get("date") or inv.get("dueDate") or date.today().isoformat()
                fields = validate(
                    "customerPayment",
                    finance.overpayment_fields(inv, payment, on, "sandbox: simulated customer payment"),
                    store,
                )
                payment_id = store.create("customerPayment", fields)
                finance.after_write("customerPayment", payment_id, fields, store, created=True)
                inv = store.get("invoice", inv["id"])
                return {
                    "id": str(payment_id),
                    "payment": fields["payment"],
                    "applied": fields["applied"],
                    "unapplied": fields["unapplied"],
                    "invoice": {
                        k: inv.get(k)
                        for k in ("id", "tranId", "total", "amountPaid", "amountRemaining", "status", "dueDate")
                    },
                }

        return Response(dumps_exact(await run_in_threadpool(record)), media_type=JSON)

    @router.post("/invoices/{invoice_id}/void")
    async def void_invoice(invoice_id: str) -> Response:
        """A user voids the invoice in the NetSuite UI (Transactions > Void): not offered by the
        REST record API, so an integration only ever sees the result. As with "Void
        Transactions Using Reversing Journals" on, the invoice keeps its lines and amounts and
        its status becomes Voided (the reversing journal is not modelled); its timeBills stay
        billed, so nothing is re-invoiced by itself. Voiding twice is a no-op."""

        def void() -> dict:
            with store.lock:
                inv = store.get("invoice", invoice_id) if invoice_id.isdigit() else None
                if inv is None:
                    raise NetSuiteError(404, "RECORD_NOT_FOUND", "The invoice does not exist.", "invoice_id")
                if inv.get("status") != finance.VOIDED:
                    finance._update(store, "invoice", inv, status=finance.VOIDED, voided=True, memo="VOID")
                inv = store.get("invoice", invoice_id)
                return {k: inv.get(k) for k in ("id", "tranId", "total", "amountRemaining", "status", "voided")}

        return Response(dumps_exact(await run_in_threadpool(void)), media_type=JSON)

    return router
