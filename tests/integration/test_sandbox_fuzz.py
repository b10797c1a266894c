"""The sandboxes never answer 5xx to bad input: property-based requests against each one.

A fake vendor that answers 500 where the real one answers 400 or 404 hides bugs in q2c (a
connector that treats a 500 as transient retries forever what the vendor would have refused
once). Each sandbox runs over real HTTP on a fresh database, with a real token, and is driven
three ways, all with a bounded, derandomized budget so `make test` stays fast and repeatable:

1. schemathesis, from the sandbox's own OpenAPI document: every vendor route with generated
   path and query parameters (huge and negative numbers, unicode, empty strings);
2. Hypothesis, for what the OpenAPI document cannot say (the routes read their query string
   and body themselves, as vendors do): every vendor route with the query parameters the
   vendor documents, given out-of-range and malformed values;
3. Hypothesis, every write route with malformed bodies: any JSON value, nested junk, numbers
   beyond 64 bits, invalid UTF-8, a form body, an empty body.

Path parameters mix IDs harvested from the sandbox's own records (so bodies reach the
validation behind the lookup) with IDs that cannot exist. Sandbox-only admin routes
(`/__sandbox/...`) are left out: they inject faults on purpose. Any 5xx fails the test and
names the request, so the fix is one reproduction away.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxes.common.server import ServerThread

# examples per route and way; ~60 routes over three sandboxes stay well under a minute
SCHEMA_EXAMPLES = 15
QUERY_EXAMPLES = 25
BODY_EXAMPLES = 30

_FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same requests in every run: a failure reproduces, CI stays stable
    database=None,
    suppress_health_check=list(HealthCheck),
)

# the query parameters each vendor documents for its list and get routes
VENDOR_QUERY_PARAMS = {
    "crm": ["q", "fields"],
    "psa": [
        "workspace_id",
        "only",
        "page",
        "per_page",
        "limit",
        "offset",
        "order",
        "include",
        "approved",
        "date_performed_between",
        "updated_after",
        "search",
        "subject_type",
        "subject_id",
        "service_name",
        "service_model",
        "user_id",
    ],
    "erp": ["q", "limit", "offset", "expandSubResources", "fields"],
}

_HUGE = [
    "99999999999999999999",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e308",
    "-1",
    "0",
    "NaN",
    "",
    " ",
    "%00",
    "\u0000",
    "'; DROP TABLE x; --",
    "a" * 5000,
    "..",
    "1.5",
    "true",
]

junk_text = st.one_of(st.sampled_from(_HUGE), st.text(max_size=40), st.integers().map(str))

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(_HUGE),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=15), children, max_size=5),
    ),
    max_leaves=12,
)


@dataclass
class Target:
    """One running sandbox: where it is, how to authenticate, what its records are called."""

    name: str
    url: str
    app: Any
    headers: dict[str, str]
    hints: dict[str, list[str]] = field(default_factory=dict)  # real values for named path parameters
    known_ids: list[str] = field(default_factory=list)
    known_keys: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def vendor_operations(self) -> Iterator[Any]:
        schema = schemathesis.openapi.from_dict(self.app.openapi())
        for result in schema.get_all_operations():
            operation = result.ok()
            if not operation.path.startswith("/__sandbox"):
                yield operation

    @contextmanager
    def answered(self, method: str, path: str, what: str) -> Iterator[None]:
        """A dropped connection is as wrong as a 500: the vendor always answers."""
        try:
            yield
        except (httpx.TransportError, requests.exceptions.ConnectionError) as exc:
            self.failures.append(f"{method.upper()} {path} [{what}] -> connection dropped: {exc!r}"[:400])

    def check(self, method: str, path: str, response: httpx.Response | Any, what: str) -> None:
        self.statuses[response.status_code] += 1
        if os.environ.get("Q2C_FUZZ_TRACE"):
            print(response.status_code, method, path, what[:100])
        if response.status_code >= 500:
            body = response.text[:200].replace("\n", " ")
            self.failures.append(f"{method.upper()} {path} [{what}] -> {response.status_code}: {body}")


def _harvest(target: Target, client: httpx.Client) -> None:
    """IDs and field names from the sandbox's own records, so fuzzed requests reach past lookups."""
    ids: set[str] = set()
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                keys.add(k)
                if k.lower() in {"id", "internalid"} and isinstance(v, str | int):
                    ids.add(str(v))
                walk(v)
        elif isinstance(value, list):
            for v in value[:20]:
                walk(v)

    for operation in target.vendor_operations():
        params = re.findall(r"\{([^}]+)\}", operation.path)
        if operation.method.lower() != "get" or not set(params) <= target.hints.keys():
            continue
        for values in itertools.product(*(target.hints[p] for p in params)):
            response = client.get(_fill(operation.path, dict(zip(params, values))), headers=target.headers)
            if "json" in response.headers.get("content-type", ""):
                walk(response.json())
    for name in ("records", "rows"):
        response = client.get(f"/__sandbox/{name}", headers=target.headers)
        if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
            walk(response.json())
    target.known_ids = sorted(ids | set(target.known_ids))[:60] or ["1"]
    target.known_keys = sorted(keys)[:80]


def _path_param(target: Target, name: str) -> st.SearchStrategy[str]:
    """Mostly real values (so requests reach the code behind the lookup), sometimes junk."""
    real = st.sampled_from(target.hints.get(name) or target.known_ids)
    return st.one_of(real, real, real, st.sampled_from(target.known_ids), junk_text)


def _fill(path: str, values: dict[str, str]) -> str:
    """The route with its parameters percent-encoded: what a client would put on the wire."""
    return re.sub(r"\{([^}]+)\}", lambda m: quote(values.get(m.group(1), "1"), safe=""), path)


def _bodies(target: Target) -> st.SearchStrategy[tuple[str, bytes]]:
    keys = st.sampled_from(target.known_keys or ["id"])
    documents = st.recursive(
        json_values,
        lambda children: st.dictionaries(st.one_of(keys, st.text(max_size=10)), children, max_size=6),
        max_leaves=16,
    )
    form_fields = ["grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope"]
    return st.one_of(
        documents.map(lambda v: ("application/json", json.dumps(v).encode())),
        st.dictionaries(keys, documents, max_size=6).map(lambda v: ("application/json", json.dumps(v).encode())),
        st.binary(max_size=64).map(lambda b: ("application/json", b)),
        st.sampled_from([b"", b"{", b"[]", b"null", b'{"a":' * 50, b"\xff\xfe", b"1" * 400]).map(
            lambda b: ("application/json", b)
        ),
        st.dictionaries(st.sampled_from(form_fields), junk_text, max_size=5).map(
            lambda d: ("application/x-www-form-urlencoded", str(httpx.QueryParams(d)).encode())
        ),
    )


def _from_schema(target: Target, operation: Any) -> None:
    @settings(_FUZZ_SETTINGS, max_examples=SCHEMA_EXAMPLES)
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        what = f"schema {case.query or ''}"
        with target.answered(operation.method, case.formatted_path, what):
            response = case.call(base_url=target.url, headers=target.headers)
            target.check(operation.method, case.formatted_path, response, what)

    run()


def _with_query(target: Target, client: httpx.Client, operation: Any) -> None:
    params = re.findall(r"\{([^}]+)\}", operation.path)

    @settings(_FUZZ_SETTINGS, max_examples=QUERY_EXAMPLES)
    @given(
        path_values=st.fixed_dictionaries({p: _path_param(target, p) for p in params}),
        query=st.dictionaries(st.sampled_from(VENDOR_QUERY_PARAMS[target.name]), junk_text, max_size=4),
    )
    def run(path_values: dict, query: dict) -> None:
        path = _fill(operation.path, path_values)
        what = f"query {query!r}"[:300]
        with target.answered(operation.method, path, what):
            response = client.request(operation.method, path, params=query, headers=target.headers)
            target.check(operation.method, path, response, what)

    run()


def _with_body(target: Target, client: httpx.Client, operation: Any) -> None:
    params = re.findall(r"\{([^}]+)\}", operation.path)

    @settings(_FUZZ_SETTINGS, max_examples=BODY_EXAMPLES)
    @given(path_values=st.fixed_dictionaries({p: _path_param(target, p) for p in params}), body=_bodies(target))
    def run(path_values: dict, body: tuple[str, bytes]) -> None:
        path = _fill(operation.path, path_values)
        content_type, content = body
        headers = {**target.headers, "Content-Type": content_type}
        what = f"body {content[:120]!r}"
        with target.answered(operation.method, path, what):
            response = client.request(operation.method, path, content=content, headers=headers)
            target.check(operation.method, path, response, what)

    run()


def fuzz(target: Target) -> list[str]:
    """Drive every vendor route of the sandbox the three ways; returns the requests that got 5xx."""
    with httpx.Client(base_url=target.url, timeout=30) as client:
        _harvest(target, client)
        for operation in target.vendor_operations():
            _from_schema(target, operation)
            _with_query(target, client, operation)
            if operation.method.lower() in {"post", "put", "patch"}:
                _with_body(target, client, operation)
    return target.failures


def _assert_no_5xx(target: Target) -> None:
    fuzz(target)
    statuses = dict(sorted(target.statuses.items()))
    print(f"\n{target.name} sandbox fuzz: {target.statuses.total()} requests, statuses {statuses}")
    unique = sorted(set(target.failures))
    past_auth = sum(n for status, n in target.statuses.items() if status not in (401, 403))
    assert past_auth > target.statuses.total() / 2, "the requests mostly bounced off authentication: fix the token"
    assert not unique, f"{len(unique)} requests answered 5xx:\n" + "\n".join(unique[:40])


def _serve(make_app: Callable[[], Any]) -> Iterator[tuple[Any, ServerThread]]:
    app = make_app()
    server = ServerThread(app).start()
    try:
        yield app, server
    finally:
        server.stop()


@pytest.mark.slow  # ~35-55 s of generated requests: runs beside the rest in make test
def test_crm_sandbox_never_answers_5xx(tmp_path):
    from sandboxes.config import DEMO_CRM_CLIENT_ID, DEMO_CRM_CLIENT_SECRET
    from sandboxes.crm.app import create_app

    for app, server in _serve(lambda: create_app(f"sqlite:///{tmp_path / 'crm.db'}")):
        token = httpx.post(
            f"{server.url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEMO_CRM_CLIENT_ID,
                "client_secret": DEMO_CRM_CLIENT_SECRET,
            },
            timeout=10,
        ).json()["access_token"]
        hints = {
            "version": ["v60.0", "v58.0"],
            "sobject": ["Account", "Opportunity", "OpportunityLineItem"],
            "field": ["Id", "ERP_Customer_Id__c", "Name"],
        }
        target = Target("crm", server.url, app, {"Authorization": f"Bearer {token}"}, hints)
        for sobject in hints["sobject"]:
            rows = httpx.get(
                f"{server.url}/services/data/v60.0/query",
                params={"q": f"SELECT Id FROM {sobject} LIMIT 10"},
                headers=target.headers,
                timeout=10,
            ).json()["records"]
            target.known_ids += [row["Id"] for row in rows]
        _assert_no_5xx(target)


@pytest.mark.slow  # ~35-55 s of generated requests: runs beside the rest in make test
def test_psa_sandbox_never_answers_5xx(tmp_path):
    from sandboxes.config import DEMO_PSA_TOKEN
    from sandboxes.psa.app import create_app

    for app, server in _serve(lambda: create_app(f"sqlite:///{tmp_path / 'psa.db'}")):
        target = Target("psa", server.url, app, {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"})
        _assert_no_5xx(target)


def test_erp_sandbox_never_answers_5xx(erp_isolated):
    from sandboxes.erp.validation import RECORD_TYPES

    headers = {"Authorization": f"Bearer {erp_isolated.token()}"}
    target = Target("erp", erp_isolated.url, erp_isolated.app, headers, {"record_type": list(RECORD_TYPES)})
    _assert_no_5xx(target)


@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775808", "-1", "abc", "1.5"])
def test_psa_huge_and_malformed_ids_are_404_not_500(tmp_path, value):
    """The issue's own reproductions: IDs beyond 64 bits answered 500."""
    from sandboxes.config import DEMO_PSA_TOKEN
    from sandboxes.psa.app import create_app

    for _app, server in _serve(lambda: create_app(f"sqlite:///{tmp_path / 'psa.db'}")):
        headers = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
        for method, path, params in [
            ("GET", f"/api/v1/workspaces/{value}.json", None),
            ("GET", "/api/v1/time_entries.json", {"workspace_id": value}),
            ("PUT", f"/api/v1/timesheet_submissions/{value}/approve.json", None),
        ]:
            r = httpx.request(method, server.url + path, params=params, headers=headers, timeout=10)
            assert 400 <= r.status_code < 500, (method, path, params, r.status_code, r.text[:200])
            assert "errors" in r.json()


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_erp_huge_id_is_a_netsuite_error_not_500(erp_isolated, method):
    r = httpx.request(
        method,
        f"{erp_isolated.url}/services/rest/record/v1/customer/99999999999999999999",
        headers={"Authorization": f"Bearer {erp_isolated.token()}", "Content-Type": "application/json"},
        content=b'{"companyName": "x"}' if method == "PATCH" else None,
        timeout=10,
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/vnd.oracle.resource+json")
    assert r.json()["o:errorDetails"]
