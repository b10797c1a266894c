"""The bridge from `q2c.vendors.http` to traces and metrics, kept free of heavy imports: the
vendor connectors are imported everywhere (worker, webhook, CLI, sandbox-free tools) and must
not pull Prometheus or the ledger in with them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from q2c.observability.tracing import VendorSpan
    from q2c.vendors.calls import CallRecord

# (counter, latency histogram) on the worker's Temporal runtime meter, set by metrics.use_meter
instruments: tuple | None = None


def observe_vendor_call(record: CallRecord, span: VendorSpan | None) -> None:
    """Called by `q2c.vendors.http` for every attempt of every vendor call: its span learns the
    status and correlation ID; the worker's meter counts it. Never raises."""
    try:
        if span is not None:
            span.record(record.correlation_id, record.operation, record.status, record.outcome, record.error_code)
        if instruments is not None:
            calls, latency = instruments
            labels = {"system": record.system, "outcome": record.outcome}
            calls.add(1, labels)
            latency.record(float(record.duration_ms), labels)
    except Exception:  # observability must never fail a vendor call
        pass
