"""Configuration from the environment: one place, read when asked (never at import).

Temporal's own variable names are used where they exist (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE); everything of ours starts with Q2C_. Pointing q2c at a real
Salesforce / NetSuite / Kantata is a matter of setting the *_URL and credential
variables, not of code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TASK_QUEUE = "q2c-engagements"

# No credential or secret has a default: `make up` and the tests set demo values explicitly
# (stack/demo_env.py); a process started without what it needs refuses to start and names the
# variables (`missing_variables`).
ERP_DEFAULT_SCOPES = ("rest_webservices",)
ERP_DEFAULT_JWT_ALG = "PS256"
OUTBOUND_PATH = "/webhooks/salesforce/outbound"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class CrmSettings:
    base_url: str
    client_id: str
    client_secret: str
    api_version: str
    organization_id: str
    # Q2C_CRM_MAX_IN_FLIGHT: requests this process keeps in flight at most (0: no cap). Salesforce
    # counts at most 25 concurrent requests over 20 s per org (shared with every integration);
    # with requests timing out well under 20 s and 10 in flight q2c never reaches it
    max_in_flight: int | None = 10
    # Q2C_CRM_API_USAGE_BACKOFF: when Sforce-Limit-Info reports api-usage at or above this share
    # of the org's daily limit, q2c stops calling the CRM for Q2C_CRM_API_BACKOFF_SECONDS
    # (a retryable error; Temporal schedules the retry), leaving the rest to people and others
    api_usage_backoff: float = 0.9
    api_backoff_seconds: float = 300.0
    # Q2C_CRM_DAILY_API_BUDGET: CRM calls q2c allows itself per UTC day, counted in the ledger
    # across processes (q2c/ledger/api_budget.py); the default leaves 3,000 of Salesforce's
    # 15,000 for people and other integrations (0: counted, no budget)
    daily_api_budget: int = 12_000


@dataclass(frozen=True)
class ErpSettings:
    """NetSuite over OAuth 2.0 machine-to-machine (client credentials with a JWT assertion).

    There is no client secret: q2c signs a client assertion with the private key of the
    certificate an administrator mapped to the integration record (Setup > Integration >
    OAuth 2.0 Client Credentials (M2M) Setup), naming the mapping's certificate ID as `kid`.
    The key comes from Q2C_ERP_PRIVATE_KEY_FILE (a PEM file) or Q2C_ERP_PRIVATE_KEY (the PEM
    text); it is read when the first token is needed, so a missing key is reported by the
    call that needs it (and by `q2c doctor`), naming the variable."""

    base_url: str
    account_id: str
    client_id: str
    certificate_id: str | None = None  # Q2C_ERP_CERTIFICATE_ID: the JWT `kid`
    private_key_file: str | None = None  # Q2C_ERP_PRIVATE_KEY_FILE
    private_key: str | None = field(default=None, repr=False)  # Q2C_ERP_PRIVATE_KEY (PEM text)
    scopes: tuple[str, ...] = ERP_DEFAULT_SCOPES  # Q2C_ERP_SCOPES
    jwt_alg: str = ERP_DEFAULT_JWT_ALG  # Q2C_ERP_JWT_ALG: PS256 (NetSuite's default), ES256, ...
    # requests this process keeps in flight at most: its share of NetSuite's account-wide limit
    # (5 on small accounts, shared by every integration): Q2C_ERP_MAX_IN_FLIGHT, or else
    # floor(Q2C_ERP_ACCOUNT_CONCURRENCY / Q2C_WORKER_COUNT), at least 1 (`erp_share`)
    max_in_flight: int | None = 4
    daily_api_budget: int = 0  # Q2C_ERP_DAILY_API_BUDGET: ERP calls per UTC day (0: counted, no budget)


@dataclass(frozen=True)
class PsaSettings:
    base_url: str
    token: str
    # Q2C_PSA_MAX_IN_FLIGHT: requests this process keeps in flight at most (0: no cap); Kantata
    # rate-limits per token and answers 429 with Retry-After beyond it
    max_in_flight: int | None = 8
    daily_api_budget: int = 0  # Q2C_PSA_DAILY_API_BUDGET: PSA calls per UTC day (0: counted, no budget)


@dataclass(frozen=True)
class Settings:
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    state_dir: Path
    crm: CrmSettings
    erp: ErpSettings
    psa: PsaSettings
    webhook_host: str
    webhook_port: int
    webhook_secret: str
    crm_port: int
    psa_port: int
    erp_port: int
    temporal_ui_url: str
    http_timeout_seconds: float = 15.0
    period_seconds: int | None = None  # demo: seconds per billing month; None = calendar months
    payment_poll_seconds: int = 86_400
    grace_days: int = 3  # after the end date, late approvals are collected this long before the final posting
    # Q2C_API_BUDGET_DEFER_AT: once this share of a vendor's daily API budget is spent, deferrable
    # work (payment polling, reconciliation) waits for the next UTC day; activation and posting
    # go on until the budget itself is spent
    api_budget_defer_at: float = 0.8
    # T&M not-to-exceed policy for new engagements: warn at these percentages of the cap
    # (Q2C_BUDGET_WARN_AT, e.g. "80,100"); at the cap hold the excess for the PMO (Q2C_BUDGET_HOLD)
    budget_warn_at: tuple[int, ...] = (80, 100)
    budget_hold: bool = True
    ledger_db_url: str | None = None  # Q2C_LEDGER_DB_URL; None: SQLite in the state folder
    api_tokens: str | None = None  # Q2C_API_TOKENS (user:role:token,...); None: the console refuses to start
    session_hours: float = 8.0  # Q2C_SESSION_HOURS: a console sign-in lasts this long at most
    console_secret: str | None = None  # Q2C_CONSOLE_SECRET; None: a random key per process
    codec_keys: str | None = None  # Q2C_CODEC_KEYS (key-id:base64,...): payload encryption, first key seals
    # TLS, mTLS, API key and gRPC metadata from Temporal's environment configuration
    # (TEMPORAL_TLS*, TEMPORAL_API_KEY, TEMPORAL_PROFILE + TEMPORAL_CONFIG_FILE): see q2c/temporal.py
    temporal_connect: dict = field(default_factory=dict)
    # Q2C_OUTBOUND_PATH_SECRETS (comma-separated; any is accepted, so a secret rotates with two
    # set at once); none set: the Outbound Message endpoint accepts no path (fails closed)
    outbound_path_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Q2C_OUTBOUND_REQUIRE_CLIENT_CERT_HEADER: the header a TLS-terminating proxy sets to
    # SUCCESS once it verified Salesforce's client certificate (e.g. X-SSL-Client-Verify)
    outbound_client_cert_header: str | None = None
    max_body_bytes: int = 1_048_576  # Q2C_MAX_BODY_BYTES: JSON webhook, console and API bodies
    outbound_max_body_bytes: int = 4_194_304  # Q2C_OUTBOUND_MAX_BODY_BYTES: up to 100 notifications
    body_timeout_seconds: float = 10.0  # Q2C_BODY_TIMEOUT_SECONDS: the whole body must arrive by then
    header_timeout_seconds: float = 10.0  # Q2C_HEADER_TIMEOUT_SECONDS: request line and headers
    webhook_rate_limit: str = "10/second;300/minute"  # Q2C_WEBHOOK_RATE_LIMIT: per client IP
    # Q2C_WEBHOOK_CONCURRENCY: notifications of one Outbound Message acted on at once (Temporal
    # calls in flight); Salesforce gives up on a delivery after 10 s, so 100 must fit well inside
    webhook_concurrency: int = 32
    # Worker Deployment Versioning: both set, on; neither, unversioned; one alone, the worker refuses to start
    deployment_name: str | None = None  # Q2C_DEPLOYMENT_NAME: the Worker Deployment, e.g. q2c-worker
    build_id: str | None = None  # Q2C_BUILD_ID: this build of it, e.g. the git commit or release tag
    metrics_address: str | None = None  # Q2C_METRICS_ADDRESS: the worker's Prometheus endpoint (host:port)
    # Q2C_MAX_CACHED_WORKFLOWS: engagement runs the worker keeps in memory (the sticky cache); each
    # costs a few hundred KB, and one outside it replays its (one billing period's) history when next
    # needed, so the worker's memory stays bounded however many engagements are open
    max_cached_workflows: int = 500
    # nightly reconciliation (q2c.reconciliation): when it runs, how many deals a page holds, how many it starts
    reconcile_cron: str = "0 2 * * *"  # Q2C_RECONCILE_CRON (UTC)
    reconcile_interval_seconds: int | None = None  # Q2C_RECONCILE_INTERVAL_SECONDS: instead of the cron (demo)
    reconcile_page_size: int = 25  # Q2C_RECONCILE_PAGE_SIZE: Closed Won deals per page (one activity each)
    reconcile_max_starts: int = 200  # Q2C_RECONCILE_MAX_STARTS: engagements one run starts at most
    extra: dict = field(default_factory=dict)

    @property
    def webhook_base_url(self) -> str:
        return f"http://{self.webhook_host}:{self.webhook_port}"

    @property
    def outbound_message_url(self) -> str:
        """The endpoint URL to give Salesforce: the path with the first (newest) path secret."""
        if not self.outbound_path_secrets:
            raise ValueError("Q2C_OUTBOUND_PATH_SECRETS is not set: the Outbound Message endpoint accepts no path")
        return f"{self.webhook_base_url}{OUTBOUND_PATH}/{self.outbound_path_secrets[0]}"

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Q2C_WEBHOOK_SECRET may hold several `whsec_...` secrets separated by spaces (rotation)."""
        return tuple(self.webhook_secret.split())

    def sandbox_db_url(self, system: str) -> str:
        return _env(f"Q2C_{system.upper()}_DB_URL", f"sqlite:///{self.state_dir / (system + '.db')}")


HTTP_ENGINES = ("aiohttp", "httpcore")


def http_engine() -> str:
    """`Q2C_HTTP_ENGINE`: what carries the vendor clients' httpx requests. `aiohttp` (the
    default, through httpx-aiohttp) costs about half the client CPU of httpx's own `httpcore`
    pool per request (1.3 against 2.4 ms here, measured in issue 15), which at month-end is
    two requests per posted entry; `httpcore` is kept as the fallback."""
    engine = _env("Q2C_HTTP_ENGINE", "aiohttp").strip().lower()
    if engine not in HTTP_ENGINES:
        raise ValueError(f"Q2C_HTTP_ENGINE must be one of {', '.join(HTTP_ENGINES)}, not {engine!r}")
    return engine


def erp_scopes(text: str) -> tuple[str, ...]:
    """Q2C_ERP_SCOPES: scopes separated by commas or spaces (NetSuite: restlets,
    rest_webservices, suite_analytics)."""
    return tuple(s for s in text.replace(",", " ").split() if s) or ERP_DEFAULT_SCOPES


def erp_share(account_concurrency: int, worker_count: int) -> int | None:
    """One process's share of the ERP's account-wide concurrency limit: floor(limit / workers),
    at least 1 (so more workers than the limit would exceed it: the doctor says so); 0: no cap."""
    if account_concurrency <= 0:
        return None
    return max(1, account_concurrency // max(1, worker_count))


def load_erp_settings(erp_port: int) -> ErpSettings:
    """The ERP part of the settings (NetSuite M2M: account, client ID, certificate ID, key)."""
    return ErpSettings(
        base_url=_env("Q2C_ERP_URL", f"http://127.0.0.1:{erp_port}"),
        account_id=_env("Q2C_ERP_ACCOUNT", ""),
        client_id=_env("Q2C_ERP_CLIENT_ID", ""),
        certificate_id=_env("Q2C_ERP_CERTIFICATE_ID", "") or None,
        private_key_file=_env("Q2C_ERP_PRIVATE_KEY_FILE", "") or None,
        private_key=_env("Q2C_ERP_PRIVATE_KEY", "") or None,
        scopes=erp_scopes(_env("Q2C_ERP_SCOPES", ",".join(ERP_DEFAULT_SCOPES))),
        jwt_alg=_env("Q2C_ERP_JWT_ALG", ERP_DEFAULT_JWT_ALG).upper(),
        # an explicit per-process cap wins; else this worker's share of the account's limit
        max_in_flight=(
            int(_env("Q2C_ERP_MAX_IN_FLIGHT", "0")) or None
            if os.environ.get("Q2C_ERP_MAX_IN_FLIGHT")
            else erp_share(int(_env("Q2C_ERP_ACCOUNT_CONCURRENCY", "4")), int(_env("Q2C_WORKER_COUNT", "1")))
        ),
        daily_api_budget=int(_env("Q2C_ERP_DAILY_API_BUDGET", "0")),
    )


def _temporal_profile() -> dict:
    """Temporal's own environment configuration (the `temporal` CLI reads the same): address,
    namespace, TLS/mTLS files or data, API key, gRPC metadata, from TEMPORAL_* variables over
    the profile TEMPORAL_PROFILE of the TOML file TEMPORAL_CONFIG_FILE (default
    ~/.config/temporalio/temporal.toml)."""
    from temporalio.envconfig import ClientConfigProfile

    profile = ClientConfigProfile.load(profile=os.environ.get("TEMPORAL_PROFILE") or None)
    return dict(profile.to_client_connect_config())


def _percentages(name: str, text: str) -> tuple[int, ...]:
    """'80,100' -> (80, 100): whole percentages between 1 and 1000, or a clear error naming the variable."""
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise ValueError(f"{name}: '{part}' is not a whole percentage between 1 and 1000 (e.g. 80,100)")
        values.append(int(part))
    return tuple(sorted(set(values)))


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: '{text}' is not true or false")


def load_settings() -> Settings:
    temporal = _temporal_profile()
    state_dir = Path(_env("Q2C_STATE_DIR", str(Path(__file__).resolve().parents[1] / ".state")))
    crm_port = int(_env("Q2C_CRM_PORT", "8101"))
    psa_port = int(_env("Q2C_PSA_PORT", "8102"))
    erp_port = int(_env("Q2C_ERP_PORT", "8103"))
    return Settings(
        temporal_address=temporal.get("target_host") or "127.0.0.1:7233",
        temporal_namespace=temporal.get("namespace") or "default",
        temporal_connect={k: v for k, v in temporal.items() if k not in ("target_host", "namespace")},
        task_queue=_env("TEMPORAL_TASK_QUEUE", DEFAULT_TASK_QUEUE),
        state_dir=state_dir,
        crm=CrmSettings(
            base_url=_env("Q2C_CRM_URL", f"http://127.0.0.1:{crm_port}"),
            client_id=_env("Q2C_CRM_CLIENT_ID", ""),
            client_secret=_env("Q2C_CRM_CLIENT_SECRET", ""),
            api_version=_env("Q2C_CRM_API_VERSION", "v60.0"),
            organization_id=_env("Q2C_CRM_ORG_ID", ""),
            max_in_flight=int(_env("Q2C_CRM_MAX_IN_FLIGHT", "10")) or None,
            api_usage_backoff=float(_env("Q2C_CRM_API_USAGE_BACKOFF", "0.9")),
            api_backoff_seconds=float(_env("Q2C_CRM_API_BACKOFF_SECONDS", "300")),
            daily_api_budget=int(_env("Q2C_CRM_DAILY_API_BUDGET", "12000")),
        ),
        erp=load_erp_settings(erp_port),
        psa=PsaSettings(
            base_url=_env("Q2C_PSA_URL", f"http://127.0.0.1:{psa_port}"),
            token=_env("Q2C_PSA_TOKEN", ""),
            max_in_flight=int(_env("Q2C_PSA_MAX_IN_FLIGHT", "8")) or None,
            daily_api_budget=int(_env("Q2C_PSA_DAILY_API_BUDGET", "0")),
        ),
        webhook_host=_env("Q2C_WEBHOOK_HOST", "127.0.0.1"),
        webhook_port=int(_env("Q2C_WEBHOOK_PORT", "8000")),
        webhook_secret=_env("Q2C_WEBHOOK_SECRET", ""),
        crm_port=crm_port,
        psa_port=psa_port,
        erp_port=erp_port,
        temporal_ui_url=_env("Q2C_TEMPORAL_UI_URL", "http://127.0.0.1:8233"),
        http_timeout_seconds=float(_env("Q2C_HTTP_TIMEOUT_SECONDS", "15")),
        period_seconds=int(_env("Q2C_PERIOD_SECONDS", "0")) or None,
        payment_poll_seconds=int(_env("Q2C_PAYMENT_POLL_SECONDS", "86400")),
        grace_days=int(_env("Q2C_GRACE_DAYS", "3")),
        api_budget_defer_at=float(_env("Q2C_API_BUDGET_DEFER_AT", "0.8")),
        budget_warn_at=_percentages("Q2C_BUDGET_WARN_AT", _env("Q2C_BUDGET_WARN_AT", "80,100")),
        budget_hold=_flag("Q2C_BUDGET_HOLD", _env("Q2C_BUDGET_HOLD", "true")),
        ledger_db_url=_env("Q2C_LEDGER_DB_URL", "") or None,
        api_tokens=_env("Q2C_API_TOKENS", "") or None,
        session_hours=float(_env("Q2C_SESSION_HOURS", "8")),
        console_secret=_env("Q2C_CONSOLE_SECRET", "") or None,
        outbound_path_secrets=tuple(s.strip() for s in _env("Q2C_OUTBOUND_PATH_SECRETS", "").split(",") if s.strip()),
        outbound_client_cert_header=_env("Q2C_OUTBOUND_REQUIRE_CLIENT_CERT_HEADER", "") or None,
        max_body_bytes=int(_env("Q2C_MAX_BODY_BYTES", "1048576")),
        outbound_max_body_bytes=int(_env("Q2C_OUTBOUND_MAX_BODY_BYTES", "4194304")),
        body_timeout_seconds=float(_env("Q2C_BODY_TIMEOUT_SECONDS", "10")),
        header_timeout_seconds=float(_env("Q2C_HEADER_TIMEOUT_SECONDS", "10")),
        webhook_rate_limit=_env("Q2C_WEBHOOK_RATE_LIMIT", "10/second;300/minute"),
        webhook_concurrency=max(1, int(_env("Q2C_WEBHOOK_CONCURRENCY", "32"))),
        deployment_name=_env("Q2C_DEPLOYMENT_NAME", "") or None,
        build_id=_env("Q2C_BUILD_ID", "") or None,
        reconcile_cron=_env("Q2C_RECONCILE_CRON", "0 2 * * *"),
        reconcile_interval_seconds=int(_env("Q2C_RECONCILE_INTERVAL_SECONDS", "0")) or None,
        reconcile_page_size=int(_env("Q2C_RECONCILE_PAGE_SIZE", "25")),
        reconcile_max_starts=int(_env("Q2C_RECONCILE_MAX_STARTS", "200")),
        metrics_address=_env("Q2C_METRICS_ADDRESS", "") or None,
        max_cached_workflows=max(0, int(_env("Q2C_MAX_CACHED_WORKFLOWS", "500"))),
        codec_keys=_env("Q2C_CODEC_KEYS", "") or None,
    )


# ---- fail closed: what each process needs --------------------------------------------------

_NEEDS: dict[str, tuple[str, ...]] = {
    "codec": ("Q2C_CODEC_KEYS",),
    "crm": ("Q2C_CRM_CLIENT_ID", "Q2C_CRM_CLIENT_SECRET"),
    "erp": ("Q2C_ERP_ACCOUNT", "Q2C_ERP_CLIENT_ID", "Q2C_ERP_CERTIFICATE_ID", "Q2C_ERP_PRIVATE_KEY_FILE"),
    "psa": ("Q2C_PSA_TOKEN",),
    "webhook": ("Q2C_WEBHOOK_SECRET", "Q2C_OUTBOUND_PATH_SECRETS", "Q2C_CRM_ORG_ID"),
    "console": ("Q2C_API_TOKENS", "Q2C_CONSOLE_SECRET"),
}
PROCESS_NEEDS: dict[str, tuple[str, ...]] = {
    # the worker talks to all three systems and reads and writes every payload
    "worker": ("codec", "crm", "erp", "psa"),
    # the webhook service verifies senders, reads the opportunity from the CRM, serves the
    # console, its API and the codec server
    "webhook": ("codec", "crm", "webhook", "console"),
}


def _set(settings: Settings, variable: str) -> bool:
    values = {
        "Q2C_CODEC_KEYS": settings.codec_keys,
        "Q2C_CRM_CLIENT_ID": settings.crm.client_id,
        "Q2C_CRM_CLIENT_SECRET": settings.crm.client_secret,
        "Q2C_CRM_ORG_ID": settings.crm.organization_id,
        "Q2C_ERP_ACCOUNT": settings.erp.account_id,
        "Q2C_ERP_CLIENT_ID": settings.erp.client_id,
        "Q2C_ERP_CERTIFICATE_ID": settings.erp.certificate_id,
        # the key may come as a file or as PEM text
        "Q2C_ERP_PRIVATE_KEY_FILE": settings.erp.private_key_file or settings.erp.private_key,
        "Q2C_PSA_TOKEN": settings.psa.token,
        "Q2C_WEBHOOK_SECRET": settings.webhook_secret,
        "Q2C_OUTBOUND_PATH_SECRETS": ",".join(settings.outbound_path_secrets),
        "Q2C_API_TOKENS": settings.api_tokens,
        "Q2C_CONSOLE_SECRET": settings.console_secret,
    }
    return bool(values[variable])


def missing_variables(settings: Settings, process: str) -> list[str]:
    """The variables `process` ("worker" | "webhook") needs that are not set, in a stable order."""
    return missing_for(settings, PROCESS_NEEDS[process])


def missing_for(settings: Settings, parts: tuple[str, ...]) -> list[str]:
    """The variables of these parts ("codec", "crm", "erp", "psa", "webhook", "console") not set."""
    names = [v for part in parts for v in _NEEDS[part]]
    return [
        ("Q2C_ERP_PRIVATE_KEY_FILE (or Q2C_ERP_PRIVATE_KEY)" if v == "Q2C_ERP_PRIVATE_KEY_FILE" else v)
        for v in names
        if not _set(settings, v)
    ]


def refuse_unless_configured(settings: Settings, process: str) -> None:
    """Exit with status 2 and name every missing variable: a q2c process never starts on
    defaults (there are none for credentials) nor half-configured."""
    import sys

    missing = missing_variables(settings, process)
    if missing:
        print(
            f"q2c {process}: refusing to start, these variables are not set: {', '.join(missing)}. "
            "See README (Configuration, Security); `make up` sets demo values for the sandboxes.",
            file=sys.stderr,
        )
        raise SystemExit(2)
