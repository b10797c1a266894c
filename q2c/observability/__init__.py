"""Traces, metrics and the business figures behind the operations dashboard.

- `tracing`: the tracer provider from OTEL_* variables, vendor-call spans, the webhook's root span;
- `metrics`: the worker's SDK runtime telemetry (Q2C_METRICS_ADDRESS), vendor-call instruments,
  the webhook's /metrics rendering;
- `figures`: one snapshot of the business (visibility + ledger + CRM contract values) read by
  the console's dashboard, `q2c kpis` and /metrics alike;
- `web`: the webhook service's wiring (root span middleware, /metrics).

Nothing happens at import (the workflow sandbox re-imports modules).
"""
