"""How an Update's validator says no: one ApplicationError naming each field and why.

Raised in a validator, it rejects the Update before anything is written to the history; the
caller gets WorkflowUpdateFailedError whose cause carries the message and, in details[0],
{"errors": [{"field", "reason"}]} for forms to show next to each field.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from q2c.domain.validation import FieldIssue

VALIDATION_FAILED = "ValidationFailed"


def reject(issues: list[FieldIssue]) -> None:
    if issues:
        raise ApplicationError(
            "; ".join(f"{i.field}: {i.reason}" for i in issues),
            {"errors": [{"field": i.field, "reason": i.reason} for i in issues]},
            type=VALIDATION_FAILED,
            non_retryable=True,
        )


def reject_one(field: str, reason: str) -> None:
    reject([FieldIssue(field=field, reason=reason)])
