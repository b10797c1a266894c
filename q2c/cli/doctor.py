"""`q2c doctor`: the pre-go-live check of every configured system (see q2c/doctor.py)."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from q2c.doctor import SYSTEMS, format_report, run_doctor
from q2c.settings import load_settings


def mount(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd(
        system: Optional[list[str]] = typer.Option(
            None, "--system", "-s", help=f"only these systems ({', '.join(SYSTEMS)}); default all"
        ),
        timeout: float = typer.Option(10.0, help="seconds per request"),
    ) -> None:
        """Check authentication, API versions, required fields and picklists, ERP setup lists, PSA
        templates, limits, Temporal search attributes and the worker; print what is ready and
        the fix for what is not. Exit code 0 when ready, 1 when anything must be fixed."""
        wanted = tuple(system) if system else SYSTEMS
        unknown = sorted(set(wanted) - set(SYSTEMS))
        if unknown:
            typer.echo(f"error: unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}", err=True)
            raise typer.Exit(2)
        report = asyncio.run(run_doctor(load_settings(), systems=wanted, timeout=timeout))
        typer.echo(format_report(report))
        raise typer.Exit(0 if report.ready else 1)
