"""NetSuite (ERP) sandbox: a faithful subset of the SuiteTalk REST record API.

Run it with `python -m sandbox.erp`; build it in tests with `sandbox.erp.app.create_app`.
"""
