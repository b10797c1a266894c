"""PSA sandbox: a faithful subset of the Kantata OX (formerly Mavenlink) API v1.

Run it with `python -m sandbox.psa`; build it in tests with `sandbox.psa.app.create_app`.
"""
