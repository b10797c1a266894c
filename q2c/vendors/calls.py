"""What one vendor call leaves behind: the record the audit hook, the ledger and the metrics
receive for every attempt. A module of its own, below both the HTTP plumbing and observability,
so neither has to import the other to name it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CallRecord:
    """What the audit hook receives for every vendor call."""

    correlation_id: str
    system: str
    operation: str
    method: str
    url: str
    status: int | None
    outcome: str  # "ok" | "retryable" | "rejected" | "error"
    duration_ms: float
    error_code: str | None = None


AuditHook = Callable[[CallRecord], Awaitable[None] | None]
