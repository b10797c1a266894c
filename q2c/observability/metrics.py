"""Metrics: the Temporal SDK's runtime telemetry on the worker, and q2c's business figures.

Two endpoints, because two processes know two different things:

- **the worker** (`Q2C_METRICS_ADDRESS`, e.g. `0.0.0.0:9464`): the SDK's own Prometheus
  endpoint (temporalio.runtime `PrometheusConfig`): task-queue polls, schedule-to-start
  latency, workflow and activity failures, sticky cache, ... (`temporal_*`), and on the same
  meter q2c's live vendor-call instruments, recorded by `q2c.vendors.http` for every call:
  `q2c_vendor_calls{system,outcome}` and the latency histogram
  `q2c_vendor_call_latency{system,outcome}` (milliseconds), and the daily API budget
  (`q2c.ledger.api_budget`): `q2c_vendor_api_calls_today{system}` (every process's calls this
  UTC day, as of the last flush) beside `q2c_vendor_api_budget{system}`. Off when the variable is unset.
- **the webhook service** (`GET /metrics` on its port): the business figures of
  `q2c.observability.figures` (engagements by stage, activation cycle time, unbilled time,
  receivables, exceptions, invoices rejected, vendor calls from the ledger's audit, payment
  status latency) rendered at scrape time, plus the webhook's own counter of duplicate
  deliveries it absorbed (`q2c_duplicate_deliveries_total{source}`).

Figures that are state (engagements by stage, unbilled hours) are gauges computed from the
records, so every replica of the service reports the same number and a restart loses nothing;
the duplicate counter is the one per-process counter (sum it across replicas).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from q2c.observability.figures import Snapshot

VENDOR_LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
PAYMENT_LATENCY_BUCKETS_SECONDS = (0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86_400)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---- the worker: SDK runtime telemetry + live vendor-call instruments --------------------------


def runtime_with_prometheus(address: str) -> Runtime:
    """A Temporal runtime whose metrics are served by Prometheus at `address` (host:port). One
    runtime per process: make it before the first client, pass it to `connect(runtime=...)`."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address,
                histogram_bucket_overrides={"q2c_vendor_call_latency": list(VENDOR_LATENCY_BUCKETS_MS)},
            )
        )
    )
    use_meter(runtime)
    return runtime


def use_meter(runtime: Runtime) -> None:
    """Record q2c's vendor-call instruments on this runtime's meter (its Prometheus endpoint)."""
    from q2c.observability import vendor

    meter = runtime.metric_meter
    vendor.instruments = (
        meter.create_counter("q2c_vendor_calls", "vendor HTTP calls by system and outcome"),
        meter.create_histogram_float("q2c_vendor_call_latency", "vendor HTTP call latency", "ms"),
    )
    from q2c.ledger import api_budget  # the daily API budget: every process's calls today, per vendor

    api_budget.instruments = (
        meter.create_gauge("q2c_vendor_api_calls_today", "vendor API calls today (UTC), all processes"),
        meter.create_gauge("q2c_vendor_api_budget", "daily API budget per vendor (0: none)"),
    )


# ---- the webhook service: duplicate deliveries ---------------------------------------------------

PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
DUPLICATES = Counter(
    "q2c_duplicate_deliveries",
    "closed-won deliveries absorbed as duplicates (nothing started, signalled or written again)",
    ["source"],
    registry=PROCESS_REGISTRY,
)


def count_duplicates(source: str, n: int = 1) -> None:
    """source: salesforce-outbound (per notification) or standard-webhooks (per message)."""
    if n > 0:
        DUPLICATES.labels(source=source).inc(n)


# ---- the business figures, rendered at scrape time ----------------------------------------------


def _histogram(name: str, doc: str, values: list[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    counts = []
    for bound in buckets:
        counts.append((_le(bound), sum(1 for v in values if v <= bound)))
    counts.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, doc, buckets=counts, sum_value=sum(values))


def _le(bound: float) -> str:
    return str(float(bound))


def _f(value: Decimal | int | float) -> float:
    return float(value)


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self):
        s = self.snap
        stage = GaugeMetricFamily("q2c_engagements", "engagements by stage", labels=["stage"])
        for name, n in s.by_stage.items():
            stage.add_metric([name], n)
        yield stage
        from q2c.observability.figures import ACTIVATION_BUCKETS_SECONDS

        yield _histogram(
            "q2c_activation_cycle_seconds",
            "closed-won to Active (first vendor call to the provisioning write-back to the CRM)",
            s.activation_seconds,
            ACTIVATION_BUCKETS_SECONDS,
        )
        hours = GaugeMetricFamily(
            "q2c_unbilled_hours", "approved time posted to the ERP, not yet invoiced (hours)", labels=["currency"]
        )
        amount = GaugeMetricFamily(
            "q2c_unbilled_amount", "approved time posted to the ERP, not yet invoiced (amount)", labels=["currency"]
        )
        for currency, (h, a) in s.unbilled_by_currency.items():
            hours.add_metric([currency], _f(h))
            amount.add_metric([currency], _f(a))
        yield hours
        yield amount
        held = GaugeMetricFamily(
            "q2c_unposted_time_entries", "approved time entries not posted: held in the exception queue", labels=[]
        )
        held.add_metric([], s.open_exceptions)
        yield held
        exc = GaugeMetricFamily("q2c_open_exceptions", "open time-entry exceptions by reason", labels=["reason"])
        for reason, n in s.exceptions_open_by_reason.items():
            exc.add_metric([reason], n)
        yield exc
        receivable = GaugeMetricFamily(
            "q2c_receivables_open", "open invoice balance by aging bucket", labels=["bucket", "currency"]
        )
        for bucket, by_currency in s.aging.items():
            for currency, value in by_currency.items():
                receivable.add_metric([bucket, currency], _f(value))
        yield receivable
        rejected = CounterMetricFamily("q2c_invoices_rejected", "invoice creations the ERP rejected")
        rejected.add_metric([], s.invoices_rejected)
        yield rejected
        issued = CounterMetricFamily("q2c_invoices_issued", "invoice creations the ERP accepted")
        issued.add_metric([], s.invoices_issued)
        yield issued
        vendor = CounterMetricFamily(
            "q2c_vendor_calls_audited", "vendor calls in the ledger's audit", labels=["system", "outcome"]
        )
        for (system, outcome), n in sorted(s.vendor_outcomes.items()):
            vendor.add_metric([system, outcome], n)
        yield vendor
        vendor_ms = CounterMetricFamily(
            "q2c_vendor_call_duration_ms", "total time spent in vendor calls (ms)", labels=["system"]
        )
        for system, v in s.vendors.items():
            vendor_ms.add_metric([system], v.total_ms)
        yield vendor_ms
        yield _histogram(
            "q2c_payment_status_latency_seconds",
            "ERP payment read to the CRM write-back of the status it found",
            s.payment_latency_seconds,
            PAYMENT_LATENCY_BUCKETS_SECONDS,
        )


def render(snap: Snapshot | None) -> bytes:
    """The Prometheus text of the business figures (if any) and this process's counters."""
    registry = CollectorRegistry(auto_describe=False)
    if snap is not None:
        registry.register(_SnapshotCollector(snap))
    return generate_latest(registry) + generate_latest(PROCESS_REGISTRY)
