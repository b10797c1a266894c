"""NetSuite (ERP) sandbox: a faithful subset of the SuiteTalk REST record API.

Run it with `python -m sandboxes.erp`; build it in tests with `sandboxes.erp.app.create_app`.
"""
