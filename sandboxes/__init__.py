"""Local stand-ins for the CRM (Salesforce), PSA (Kantata) and ERP (NetSuite).

Each is a FastAPI app speaking a faithful subset of the vendor's wire format,
persisted with sqlmodel. Sandbox-only controls live under /__sandbox.
"""
