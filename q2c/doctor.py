"""`q2c doctor`: check every configured system the way an administrator would before go-live.

Pointing q2c at a real Salesforce, NetSuite and Kantata is configuration only, so what can go
wrong at go-live is configuration: a credential, a scope, a custom field nobody deployed, a
picklist value missing, a PSA template for a service line the CRM sells, a search attribute
the Temporal namespace lacks, a worker that is not running. Each check here asks the system
itself, through the same connector the worker uses, and says what is ready and, for what is
not, the fix in words an admin can act on (the variable to set, the metadata to deploy, the
permission to grant). `docs/go-live.md` is the long form of the same list.

The checks only read. A system whose authentication fails is not asked anything else (every
later answer would be the same refusal); the other systems are still checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from temporalio.exceptions import ApplicationError

from q2c.settings import Settings

GO_LIVE = "docs/go-live.md"
API_HEADROOM = 0.10  # warn when less than this share of the CRM's daily API requests remains


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"  # works today, needs attention (a limit nearly used up, no worker yet)
    MISSING = "missing"  # something q2c needs is not there: the fix says what to add
    FAILED = "failed"  # the system refused or could not be reached
    SKIPPED = "skipped"  # not asked: an earlier check of the same system failed


BLOCKING = {Status.MISSING, Status.FAILED}


@dataclass(frozen=True)
class Finding:
    system: str  # crm | erp | psa | temporal
    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    crm_service_lines: list[str] | None = None  # read by the CRM check, compared with PSA templates

    @property
    def ready(self) -> bool:
        return not any(f.status in BLOCKING for f in self.findings)

    def by_system(self, system: str) -> list[Finding]:
        return [f for f in self.findings if f.system == system]

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status in BLOCKING]


def _refusal(err: BaseException) -> str:
    """The vendor's own words, as the connectors raise them."""
    if isinstance(err, ApplicationError):
        return f"{err.type}: {err.message}"
    return f"{type(err).__name__}: {err}"


class _System:
    """Collects one system's findings; after a failed authentication the rest are skipped."""

    def __init__(self, report: Report, system: str) -> None:
        self.report = report
        self.system = system
        self.blocked: str | None = None

    def add(self, check: str, status: Status, detail: str, fix: str = "") -> None:
        self.report.findings.append(Finding(self.system, check, status, detail, fix))

    async def run(self, check: str, probe: Callable[[], Awaitable[Any]], fix: str, *, gate: bool = False) -> Any | None:
        """Run one probe; a refusal is a FAILED finding with `fix`. Returns the probe's answer."""
        if self.blocked:
            self.add(check, Status.SKIPPED, f"not checked: {self.blocked}")
            return None
        try:
            return await probe()
        except Exception as err:  # a refusal of any kind is a finding, never a crash of the doctor
            self.add(check, Status.FAILED, _refusal(err), fix)
            if gate:
                self.blocked = f"{check} failed"
            return None


def _configured(system: _System, settings: Settings, part: str) -> bool:
    """Before asking a system anything: are its credentials set at all? (Names them if not.)"""
    from q2c.settings import missing_for

    missing = missing_for(settings, (part,))
    if missing:
        system.add(
            "configuration",
            Status.MISSING,
            f"not set: {', '.join(missing)}",
            f"Set these variables ({GO_LIVE}); `make up` writes the demo's into <state>/demo.env.",
        )
    return not missing


# ---- CRM (Salesforce) --------------------------------------------------------------------


async def check_crm(settings: Settings, report: Report, *, timeout: float) -> None:
    from q2c.vendors.salesforce import mapping
    from q2c.vendors.salesforce.client import SalesforceClient

    crm = _System(report, "crm")
    if not _configured(crm, settings, "crm"):
        return
    async with SalesforceClient(settings.crm, timeout=timeout, read_retries=0) as client:
        versions = await crm.run(
            "authentication",
            client.api_versions,
            "Set Q2C_CRM_URL (the org's My Domain URL), Q2C_CRM_CLIENT_ID and Q2C_CRM_CLIENT_SECRET to the "
            "connected app's consumer key and secret, with the client-credentials flow enabled and a run-as "
            f"integration user ({GO_LIVE}, Salesforce).",
            gate=True,
        )
        if versions is not None:
            crm.add("authentication", Status.OK, f"token for {settings.crm.client_id} at {settings.crm.base_url}")
            offered = [v.version for v in versions]
            wanted = settings.crm.api_version.removeprefix("v")
            if wanted in offered:
                crm.add("API version", Status.OK, f"v{wanted} offered (newest v{offered[-1]})")
            else:
                crm.add(
                    "API version",
                    Status.MISSING,
                    f"v{wanted} is not offered; the org offers v{offered[0]}..v{offered[-1]}",
                    f"Set Q2C_CRM_API_VERSION to one the org offers, e.g. v{offered[-1]}.",
                )
                crm.blocked = "API version not offered"
        describes: dict[str, Any] = {}
        for sobject in mapping.REQUIRED_FIELDS:
            described = await crm.run(
                f"{sobject} fields",
                lambda sobject=sobject: _describe_or_none(client, sobject),
                f"Grant the integration user read access to {sobject} (profile or permission set).",
            )
            describes[sobject] = described
        if not crm.blocked:
            gaps = mapping.org_gaps(describes)
            for sobject, needed in mapping.REQUIRED_FIELDS.items():
                mine = [g for g in gaps if g.sobject == sobject and g.missing != "picklist value"]
                if mine:
                    crm.add(
                        f"{sobject} fields",
                        Status.MISSING,
                        "; ".join(str(g) for g in mine),
                        "Deploy deploy/salesforce (sf project deploy start --source-dir deploy/salesforce/force-app) "
                        "and give the integration user the q2c permission set (read and edit on these fields).",
                    )
                elif describes.get(sobject) is not None:
                    crm.add(f"{sobject} fields", Status.OK, f"{len(needed)} fields q2c reads or writes are present")
            for (sobject, name), values in mapping.REQUIRED_PICKLIST_VALUES.items():
                absent = [g.value for g in gaps if (g.sobject, g.field, g.missing) == (sobject, name, "picklist value")]
                if describes.get(sobject) is None or describes[sobject].field(name) is None:
                    continue
                if absent:
                    crm.add(
                        f"{sobject}.{name} values",
                        Status.MISSING,
                        f"active values lack: {', '.join(str(v) for v in absent)}",
                        f"Add (or activate) these values of {sobject}.{name} in Setup > Object Manager.",
                    )
                else:
                    crm.add(f"{sobject}.{name} values", Status.OK, f"{', '.join(values)} active")
            opportunity = describes.get("Opportunity")
            service_line = opportunity.field("Service_Line__c") if opportunity is not None else None
            if service_line is not None:
                report.crm_service_lines = list(service_line.active_values)
        limits = await crm.run(
            "API limits", client.limits, "Grant the integration user 'View Setup and Configuration'."
        )
        if limits is not None:
            daily = limits.get("DailyApiRequests")
            if daily is None:
                crm.add("API limits", Status.WARN, "the org reports no DailyApiRequests limit")
            elif daily.max and daily.remaining < daily.max * API_HEADROOM:
                crm.add(
                    "API limits",
                    Status.WARN,
                    f"{daily.remaining} of {daily.max} daily API requests left",
                    "q2c backs off when the limit is reached; raise the org's limit or lower the load.",
                )
            else:
                crm.add("API limits", Status.OK, f"{daily.remaining} of {daily.max} daily API requests left")


async def _describe_or_none(client: Any, sobject: str) -> Any | None:
    """The describe, or None when the org has no such object visible to the user (a gap)."""
    from q2c.vendors.http import is_not_found

    try:
        return await client.describe(sobject)
    except Exception as err:
        if is_not_found(err):
            return None
        raise


# ---- ERP (NetSuite) ----------------------------------------------------------------------


async def check_erp(settings: Settings, report: Report, *, timeout: float) -> None:
    from q2c.vendors.netsuite.client import NetSuiteClient

    erp = _System(report, "erp")
    if not _configured(erp, settings, "erp"):
        return
    async with NetSuiteClient(settings.erp, timeout=timeout, read_retries=0) as client:
        ok = await erp.run(
            "authentication",
            lambda: _true(client.check_auth()),
            "Check Q2C_ERP_ACCOUNT, Q2C_ERP_CLIENT_ID (the integration record's client ID), "
            "Q2C_ERP_CERTIFICATE_ID and the private key (Q2C_ERP_PRIVATE_KEY_FILE or Q2C_ERP_PRIVATE_KEY): the "
            "certificate must be mapped to the integration and a role in Setup > Integration > OAuth 2.0 Client "
            f"Credentials (M2M) Setup, with scope REST Web Services ({GO_LIVE}, NetSuite).",
            gate=True,
        )
        if ok:
            erp.add("authentication", Status.OK, f"M2M token for account {settings.erp.account_id}")
        for record_type, label, permission in (
            ("subsidiary", "subsidiaries", "Lists > Subsidiaries"),
            ("currency", "currencies", "Lists > Currency"),
            ("term", "payment terms", "Setup > Accounting Lists"),
        ):
            rows = await erp.run(
                label,
                lambda record_type=record_type: client.setup_records(record_type),
                f"Give the integration role the permission {permission} (View).",
            )
            if rows is None:
                continue
            if rows:
                names = ", ".join(_name(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
                erp.add(label, Status.OK, f"{len(rows)} readable: {names}")
            else:
                erp.add(label, Status.MISSING, f"no {label} visible", f"Set up {label} or grant {permission}.")
        if not erp.blocked:
            limit = settings.erp.max_in_flight
            erp.add(
                "concurrency",
                Status.OK if limit else Status.WARN,
                f"q2c keeps at most {limit} requests in flight (Q2C_ERP_MAX_IN_FLIGHT)"
                if limit
                else "no in-flight cap (Q2C_ERP_MAX_IN_FLIGHT=0): q2c relies on NetSuite's 429s",
                ""
                if limit
                else "Set Q2C_ERP_MAX_IN_FLIGHT below the account's concurrency limit (Setup > "
                "Integration > Integration Governance), divided by the number of workers.",
            )


async def _true(coro: Awaitable[Any]) -> bool:
    await coro
    return True


def _name(row: dict[str, Any]) -> str:
    return str(row.get("name") or row.get("symbol") or row.get("refName") or row.get("id"))


# ---- PSA (Kantata) -----------------------------------------------------------------------


async def check_psa(settings: Settings, report: Report, *, timeout: float) -> None:
    from q2c.vendors.kantata.client import KantataClient

    psa = _System(report, "psa")
    if not _configured(psa, settings, "psa"):
        return
    async with KantataClient(settings.psa, timeout=timeout, read_retries=0) as client:
        me = await psa.run(
            "authentication",
            client.current_user,
            "Set Q2C_PSA_TOKEN to an OAuth token of the Kantata integration user (Settings > Integrations > "
            f"API; {GO_LIVE}, Kantata).",
            gate=True,
        )
        if me is not None:
            psa.add("authentication", Status.OK, f"token of user {me.get('full_name') or me.get('id')}")
        templates = await psa.run(
            "project templates", client.list_templates, "Give the integration user access to project templates."
        )
        if templates is None:
            return
        if not templates:
            psa.add(
                "project templates",
                Status.MISSING,
                "no project templates: q2c creates every workspace from the template of its service line",
                "Create one project template per service line, with the service line set on it.",
            )
            return
        offered = {t.service_line.strip().casefold(): t for t in templates if t.service_line}
        psa.add("project templates", Status.OK, f"{len(templates)} templates: {', '.join(t.name for t in templates)}")
        lines = report.crm_service_lines
        if lines:
            missing = [line for line in lines if line.strip().casefold() not in offered]
            if missing:
                # not blocking: q2c parks such a deal for a steward instead of failing it, and a
                # firm may list a line in the CRM before it sells it; but say so before go-live
                psa.add(
                    "template per service line",
                    Status.WARN,
                    f"CRM service lines without a PSA template: {', '.join(missing)} "
                    "(their deals will wait in the master-data queue)",
                    "Create a project template for each line the firm sells, with its service line set.",
                )
            else:
                psa.add("template per service line", Status.OK, f"all {len(lines)} CRM service lines have one")


# ---- Temporal ----------------------------------------------------------------------------


async def check_temporal(settings: Settings, report: Report, *, timeout: float) -> None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from q2c.engagement.search_attributes import ALL_KEYS
    from q2c.temporal import connect

    temporal = _System(report, "temporal")
    client = await temporal.run(
        "connection",
        lambda: asyncio.wait_for(connect(settings), timeout),
        "Set TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE to a reachable Temporal service.",
        gate=True,
    )
    if client is None:
        return
    temporal.add("connection", Status.OK, f"{settings.temporal_address}, namespace {settings.temporal_namespace}")
    listed = await temporal.run(
        "search attributes",
        lambda: client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace)),
        "Allow the operator API, or register the attributes with `temporal operator search-attribute create`.",
    )
    if listed is not None:
        known = set(listed.custom_attributes) | set(listed.system_attributes)
        missing = [k.name for k in ALL_KEYS if k.name not in known]
        if missing:
            temporal.add(
                "search attributes",
                Status.MISSING,
                f"not registered: {', '.join(missing)}",
                "Start the worker once with operator rights (it registers them), or run "
                "`temporal operator search-attribute create --name <Name> --type Keyword|Int` for each.",
            )
        else:
            temporal.add("search attributes", Status.OK, f"{len(ALL_KEYS)} registered")
    queue = await temporal.run(
        "worker",
        lambda: client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        ),
        "Check the namespace permissions of this identity.",
    )
    if queue is not None:
        pollers = len(queue.pollers)
        if pollers:
            temporal.add("worker", Status.OK, f"{pollers} poller(s) on task queue {settings.task_queue}")
        else:
            temporal.add(
                "worker",
                Status.WARN,
                f"no worker polls task queue {settings.task_queue} (engagements would wait)",
                "Start the worker: python -m q2c.worker (same TEMPORAL_* and TEMPORAL_TASK_QUEUE).",
            )


# ---- all ---------------------------------------------------------------------------------

SYSTEMS = ("crm", "erp", "psa", "temporal")


async def check_api_budgets(settings: Settings, report: Report, systems: tuple[str, ...]) -> None:
    """Each vendor's calls today (UTC) against its daily API budget, as counted in the ledger by
    every worker (q2c.ledger.api_budget): a warning once deferrable work has begun to wait."""
    from pathlib import Path

    from q2c.ledger.api_budget import calls_on
    from q2c.ledger.config import ledger_url, make_ledger_engine

    budgets = {"crm": settings.crm.daily_api_budget, "erp": settings.erp.daily_api_budget}
    budgets["psa"] = settings.psa.daily_api_budget
    url = ledger_url(settings)
    try:
        used: dict[str, int] = {}
        if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():  # only reads
            engine = make_ledger_engine(url)
            try:
                used = await asyncio.to_thread(calls_on, engine)
            finally:
                engine.dispose()
    except Exception as err:
        for system in (s for s in budgets if s in systems):
            report.findings.append(Finding(system, "api budget", Status.WARN, f"the ledger is not readable: {err}"))
        return
    variable = "Q2C_{}_DAILY_API_BUDGET"
    for system, budget in budgets.items():
        if system not in systems:
            continue
        if any(f.status is Status.FAILED for f in report.by_system(system)):
            report.findings.append(Finding(system, "api budget", Status.SKIPPED, "not read: an earlier check failed"))
            continue
        n = used.get(system, 0)
        if not budget:
            detail = f"{n:,} calls today (UTC), no daily budget ({variable.format(system.upper())}=0)"
            report.findings.append(Finding(system, "api budget", Status.OK, detail))
            continue
        defer = settings.api_budget_defer_at * budget
        detail = f"{n:,} of {budget:,} calls today (UTC); deferrable work waits from {defer:,.0f}"
        report.findings.append(
            Finding(
                system,
                "api budget",
                Status.WARN if n >= defer else Status.OK,
                detail,
                f"Payment polling and reconciliation wait until 00:00 UTC; raise {variable.format(system.upper())} "
                "if the vendor's daily limit allows it.",
            )
        )


async def run_doctor(settings: Settings, *, systems: tuple[str, ...] = SYSTEMS, timeout: float = 10.0) -> Report:
    """Every check of every system asked for; the CRM first (the PSA check uses its service lines)."""
    from q2c.observability.tracing import ensure_tracing, tracer

    ensure_tracing()  # with OTEL_* set, the doctor's vendor calls are traced like the worker's
    report = Report()
    checks = {"crm": check_crm, "erp": check_erp, "psa": check_psa, "temporal": check_temporal}
    with tracer().start_as_current_span("q2c doctor", attributes={"q2c.doctor.systems": ",".join(systems)}) as span:
        for system in SYSTEMS:
            if system in systems:
                await checks[system](settings, report, timeout=timeout)
        await check_api_budgets(settings, report, systems)
        span.set_attribute("q2c.doctor.ready", report.ready)
    return report


def format_report(report: Report) -> str:
    """A plain-text table: one line per check, the fix under every check that is not ready."""
    width = max((len(f"{f.system} {f.check}") for f in report.findings), default=20)
    lines = []
    marks = {Status.OK: "ok", Status.WARN: "WARN", Status.MISSING: "MISSING", Status.FAILED: "FAILED"}
    for f in report.findings:
        mark = marks.get(f.status, f.status.value)
        lines.append(f"{f.system + ' ' + f.check:<{width}}  {mark:<7}  {f.detail}")
        if f.fix and f.status is not Status.OK:
            lines.append(f"{'':<{width}}  {'':<7}  fix: {f.fix}")
    problems = report.problems()
    warnings = [f for f in report.findings if f.status is Status.WARN]
    lines.append("")
    if problems:
        lines.append(f"NOT READY: {len(problems)} problem(s) to fix (see 'fix:' lines)")
    else:
        lines.append("ready for go-live" + (f" ({len(warnings)} warning(s) to read)" if warnings else ""))
    return "\n".join(lines)
