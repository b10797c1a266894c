"""Text that has to fit a stored field: cut visibly, never silently.

The ledger's columns have widths (an audit row's URL 2,000 characters, a reconciliation
difference's values 500, a steward's reason 1,000). What a person types is refused field by
field when it is longer (`REASON_MAX`); what q2c itself records (a vendor URL, a difference
found overnight) is stored with `clip`, which keeps the head and says, in the text, how long
the whole was, so a reader of the audit or the report sees that something was left out."""

from __future__ import annotations

REASON_MAX = 1000  # a steward's reason or note, as the ledger stores it (credit notes, decisions)
PERSON_MAX = 200  # who asked (a user name or service account)


def clip(text: str, limit: int) -> str:
    """`text` unchanged when it fits `limit` characters; otherwise its head followed by a
    marker naming the whole length, the result at most `limit` characters long."""
    if len(text) <= limit:
        return text
    marker = f" ...[cut: {len(text)} characters, first {{keep}} kept]"
    keep = max(0, limit - len(marker.format(keep=limit)))
    end = marker.format(keep=keep)
    if len(end) >= limit:  # a field too narrow for the marker: the head alone
        return text[:limit]
    return text[:keep] + end
