"""The q2c ledger: what q2c itself stores about the engagements it runs.

Cross-references of IDs between CRM/PSA/ERP, the time posted to the ERP, the invoices
raised and their collection, the time-entry exception queue for stewards, and an audit
trail of every vendor API call. Vendors stay the systems of record; the ledger is q2c's
memory of what it did, so a replay never double-posts and month-end numbers can be
reconciled. Import `q2c.ledger.store.Ledger` (no side effects at import time).
"""
