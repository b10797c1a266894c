"""`python -m bench.serve_sandbox <crm|psa|erp> --port P --db URL`: one sandbox in its own process.

The benchmark runs each sandbox as a subprocess so that its request handling does not share
the benchmark's (and the worker's) GIL. Options differ from `python -m sandbox.<vendor>` only
where a benchmark needs it:
- CRM: no Outbound Messages (engagements are started directly) and no daily API limit worth
  speaking of (the benchmark measures the ERP, not Salesforce's 15,000-call day);
- ERP: no concurrency limit and no latency at start; the benchmark sets both through
  `PUT /__sandbox/faults` for the timed part only. Its demo M2M certificate lives next to its
  SQLite database (`<folder>/erp-m2m/`), where bench/stack.py reads the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

VENDORS = ("crm", "psa", "erp")


def build_app(vendor: str, db_url: str):
    if vendor == "crm":
        from sandboxes.crm.app import create_app as crm_app

        return crm_app(db_url, outbound_url=None, daily_api_limit=1_000_000_000)
    if vendor == "psa":
        from sandboxes.psa.app import create_app as psa_app

        return psa_app(db_url)
    from sandboxes.erp.app import create_app as erp_app

    m2m_dir = Path(db_url.removeprefix("sqlite:///")).parent / "erp-m2m" if db_url.startswith("sqlite:///") else None
    return erp_app(db_url, concurrency_limit=None, m2m_dir=m2m_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_sandbox")
    parser.add_argument("vendor", choices=VENDORS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:////tmp/x/erp.db")
    args = parser.parse_args(argv)
    app = build_app(args.vendor, args.db)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
