"""Month-end benchmark: N engagements x M approved time entries posted and invoiced against the
ERP sandbox under its account-wide concurrency limit. Run `python -m bench --help`."""
