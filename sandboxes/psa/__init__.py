"""PSA sandbox: a faithful subset of the Kantata OX (formerly Mavenlink) API v1.

Run it with `python -m sandboxes.psa`; build it in tests with `sandboxes.psa.app.create_app`.
"""
