"""The ERP sandbox narrows a filtered record list through its index (sandboxes/erp/store.py,
`candidates`) when the `q=` is a conjunction with `IS` / `ANY_OF` on an indexed field: lists by
customer (the project) and by externalId answer, over real HTTP, exactly what a full scan does
(the same query with the index out of the way, byte for byte, and an OR form or a non-indexed
field that selects the same records), after a reference changes, after records are deleted
(a reset; the record API has no DELETE), and after a restart on the same state directory."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from q2c.vendors.netsuite.finance_mapping import unbilled_time_query
from tests.fixtures.erp import ErpSandbox, demo_m2m
from tests.fixtures.erp_records import R, created_id, project, uid
from tests.fixtures.erp_records import time_bill as _time_bill


def time_bill(http: httpx.Client, job: str, day: int, eid: str) -> str:
    return _time_bill(http, job, day, eid, memo=f"work for {job}")


class Sandbox:
    """An ERP sandbox over real HTTP on a state directory of its own, restartable on it (and
    on the same port, so that the links it answers stay the same)."""

    def __init__(self, state_dir) -> None:
        from sandboxes.common.server import free_port

        self.db_url = f"sqlite:///{state_dir}/erp.db"
        self.port = free_port()
        self.sandbox: ErpSandbox | None = None
        self.http: httpx.Client | None = None

    def start(self) -> httpx.Client:
        from sandboxes.common.server import ServerThread
        from sandboxes.erp.app import create_app

        app = create_app(self.db_url, m2m_dir=demo_m2m().directory)
        self.sandbox = ErpSandbox(url="", app=app, server=ServerThread(app, port=self.port).start())
        self.sandbox.url = self.sandbox.server.url
        headers = {"Authorization": f"Bearer {self.sandbox.token()}"}
        self.http = httpx.Client(base_url=self.sandbox.url, timeout=10, headers=headers)
        return self.http

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.sandbox is not None:
            self.sandbox.server.stop()
        self.http = self.sandbox = None

    def restart(self) -> httpx.Client:
        self.stop()
        return self.start()


@pytest.fixture
def erp(tmp_path):
    sandbox = Sandbox(tmp_path)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def pages(http: httpx.Client, q: str, limit: int = 2) -> list[bytes]:
    """Every page of the list, as the bytes the sandbox answers."""
    out, offset = [], 0
    while True:
        response = http.get(f"{R}/timeBill", params={"q": q, "limit": limit, "offset": offset})
        assert response.status_code == 200, response.text
        out.append(response.content)
        if not response.json()["hasMore"]:
            return out
        offset += limit


def ids(http: httpx.Client, q: str) -> list[str]:
    body = http.get(f"{R}/timeBill", params={"q": q}).json()
    assert body["totalResults"] == len(body["items"])
    return [item["id"] for item in body["items"]]


def scanned(erp: Sandbox, monkeypatch, q: str, limit: int = 2) -> list[bytes]:
    """The pages of the same list with the index out of the way: a full scan answers them."""
    with monkeypatch.context() as patch:
        patch.setattr(erp.sandbox.app.state.store, "candidates", lambda *args: None)
        return pages(erp.http, q, limit)


def assert_as_a_scan(erp: Sandbox, monkeypatch, indexed: str, equivalent: str, expected: list[str]) -> None:
    """`indexed` (served through the index) answers `expected`, in ID order, exactly as a scan:
    every page byte for byte as with the index out of the way, and the same records as
    `equivalent` (the same selection in a form the index does not serve)."""
    http = erp.http
    assert erp.sandbox.app.state.store.candidates("timeBill", _equalities(indexed)) is not None
    assert _equalities(equivalent) == ()
    assert ids(http, indexed) == ids(http, equivalent) == sorted(expected, key=int)
    for limit in (2, 1000):
        assert pages(http, indexed, limit) == scanned(erp, monkeypatch, indexed, limit)


def _equalities(q: str):
    from sandboxes.erp.query import parse

    return parse(q).equalities


def by_customer(*jobs: str) -> str:
    return f"customer ANY_OF [{', '.join(jobs)}]"


def as_or(*jobs: str) -> str:
    """The same selection as `by_customer`, as an OR (which the index does not serve)."""
    return " OR ".join(f"customer ANY_OF [{job}]" for job in jobs)


def by_eid(eid: str) -> str:
    return f'externalId IS "{eid}"'


def check_all(erp: Sandbox, monkeypatch, bills: dict[str, tuple[str, str]], jobs: list[str]) -> None:
    """Every list the index serves against its scan, for the bills {id: (job, externalId)}."""
    for job in jobs:
        of_job = [b for b, (j, _) in bills.items() if j == job]
        assert_as_a_scan(erp, monkeypatch, by_customer(job), as_or(job, job), of_job)
        # the connector's month-end list, against its OR form with the other conditions
        unbilled = unbilled_time_query(job, date(2027, 1, 31))
        assert_as_a_scan(erp, monkeypatch, unbilled, f"{unbilled} OR {unbilled}", of_job)
    assert_as_a_scan(erp, monkeypatch, by_customer(*jobs), as_or(*jobs), list(bills))
    for bill, (job, eid) in bills.items():
        assert_as_a_scan(erp, monkeypatch, by_eid(eid), f"{by_eid(eid)} OR {by_eid(eid)}", [bill])
        # NetSuite's text comparisons ignore case, through the index as well
        assert_as_a_scan(erp, monkeypatch, by_eid(eid.upper()), f'externalId START_WITH "{eid}"', [bill])
        both = f"{by_eid(eid)} AND {by_customer(job)}"
        assert_as_a_scan(erp, monkeypatch, both, f"{by_eid(eid)} OR {by_eid(eid)}", [bill])
        other = next((j for j in jobs if j != job), "1")
        assert_as_a_scan(erp, monkeypatch, f"{by_eid(eid)} AND {by_customer(other)}", as_or("1", "1"), [])


def test_lists_by_customer_and_external_id_answer_what_a_scan_does(erp, monkeypatch):
    http = erp.http
    jobs = [project(http) for _ in range(3)]
    bills: dict[str, tuple[str, str]] = {}
    for day in (3, 4, 5):
        for job in jobs[:2]:
            eid = uid("psa")
            bills[time_bill(http, job, day, eid)] = (job, eid)
    check_all(erp, monkeypatch, bills, jobs)
    assert ids(http, by_customer(jobs[2])) == [] and ids(http, by_eid("psa-none")) == []

    # a bill moved to another project by PATCH: listed under the new one only
    moved, (old_job, eid) = next(iter(bills.items()))
    assert http.patch(f"{R}/timeBill/{moved}", json={"customer": {"id": jobs[2]}}).status_code == 204
    bills[moved] = (jobs[2], eid)
    assert moved not in ids(http, by_customer(old_job)) and ids(http, by_customer(jobs[2])) == [moved]
    check_all(erp, monkeypatch, bills, jobs)

    # and its external ID renamed, nothing else: the old one finds nothing, the new one the bill
    renamed = uid("psa")
    assert http.patch(f"{R}/timeBill/{moved}", json={"externalId": renamed}).status_code == 204
    bills[moved] = (jobs[2], renamed)
    assert ids(http, by_eid(eid)) == [] and ids(http, by_eid(renamed)) == [moved]
    assert http.get(f"{R}/timeBill/{moved}").json()["externalId"] == renamed
    # an upsert by external ID that changes the reference back
    created_id(http.put(f"{R}/timeBill/eid:{renamed}", json={"customer": {"id": old_job}}))
    bills[moved] = (old_job, renamed)
    check_all(erp, monkeypatch, bills, jobs)

    # a restart on the same state directory: the index is rebuilt from the file
    before = {q: pages(http, q) for q in [by_customer(*jobs), *map(by_customer, jobs), by_eid(renamed)]}
    http = erp.restart()
    assert {q: pages(http, q) for q in before} == before
    check_all(erp, monkeypatch, bills, jobs)
    # new records after the restart are indexed too
    eid = uid("psa")
    bills[time_bill(http, jobs[2], 6, eid)] = (jobs[2], eid)
    check_all(erp, monkeypatch, bills, jobs)

    # deletes: the record API has none (405, nothing changes); a reset deletes every record
    assert http.delete(f"{R}/timeBill/{moved}").status_code == 405
    check_all(erp, monkeypatch, bills, jobs)
    deleted = set(bills)
    assert http.post("/__sandbox/reset").json() == {"reset": True}
    for job in jobs:
        assert ids(http, by_customer(job)) == [] == ids(http, as_or(job))
    for _, eid in bills.values():
        assert ids(http, by_eid(eid)) == []
    # the IDs the deleted bills had are given again: the new records only are found under them
    jobs = [project(http) for _ in range(2)]
    bills = {}
    for job in jobs:
        eid = uid("psa")
        bills[time_bill(http, job, 7, eid)] = (job, eid)
    assert set(bills) <= deleted
    check_all(erp, monkeypatch, bills, jobs)
    erp.restart()
    check_all(erp, monkeypatch, bills, jobs)


def test_only_a_conjunction_is_narrowed_and_every_candidate_is_tested():
    """The parsed query offers its equalities to the index only without OR, each as exactly the
    values `IS` (its first value) and `ANY_OF` accept; other conditions offer none."""
    from sandboxes.erp.query import parse

    assert parse("customer ANY_OF [5002, 5003] AND isBilled IS false").equalities == (
        ("customer", frozenset({(False, "5002"), (False, "5003"), (True, "5002"), (True, "5003")})),
        ("isBilled", frozenset({(False, "false"), (True, "f")})),
    )
    assert parse('externalId IS ["A", "b"]').equalities == (("externalId", frozenset({(False, "a"), (True, "a")})),)
    assert parse("customer ANY_OF [5002] OR customer ANY_OF [5003]").equalities == ()
    assert parse("customer ANY_OF [5002] AND memo IS x OR hours EMPTY").equalities == ()
    assert parse("customer NONE_OF [5002] AND rate EQUAL 150 AND memo START_WITH w").equalities == ()


def test_store_index_follows_every_write(tmp_path):
    """The store's candidates against a scan of `all` with the same query, across creates,
    reference changes (a reference, a bare ID, a boolean, removed), restarts and a clear."""
    from sandboxes.common.db import make_engine
    from sandboxes.erp.query import parse
    from sandboxes.erp.store import RecordStore

    store = RecordStore(make_engine(f"sqlite:///{tmp_path}/store.db"))
    queries = [
        "customer ANY_OF [5001]",
        "customer ANY_OF [5001, 5002] AND memo IS a",
        "customer IS 5002",
        "customer IS true",
        "customer IS T",
        'externalId IS "E-A"',
        "externalId ANY_OF [e-a, e-b] AND customer ANY_OF [5002]",
        "entity ANY_OF [5001]",
    ]

    def check(s: RecordStore) -> None:
        for q in queries:
            query = parse(q)
            found = s.candidates("timeBill", query.equalities)
            assert found is not None, q
            assert [r for r in found if query.predicate(r)] == [r for r in s.all("timeBill") if query.predicate(r)], q

    a = store.create("timeBill", {"memo": "a", "customer": {"id": "5001"}}, external_id="e-a")
    b = store.create("timeBill", {"memo": "a", "customer": {"id": "5002"}}, external_id="E-A")
    c = store.create("timeBill", {"memo": "c", "customer": "5002", "entity": {"id": "5001"}}, external_id="e-b")
    low = store.create("timeBill", {"memo": "a", "customer": {"id": "5001"}}, record_id=3)
    check(store)
    assert [r["id"] for r in store.candidates("timeBill", parse("customer ANY_OF [5001]").equalities)] == [
        str(low),
        str(a),
    ]
    store.replace("timeBill", a, {"memo": "a", "customer": {"id": "5002"}}, "e-a")
    store.replace("timeBill", b, {"memo": "a", "customer": True}, None)
    store.replace("timeBill", c, {"memo": "c"}, "e-b")
    check(store)
    assert [r["id"] for r in store.candidates("timeBill", parse("customer IS 5002").equalities)] == [str(a)]
    reloaded = RecordStore(store.engine)
    check(reloaded)
    assert reloaded._index == store._index
    store.clear()
    check(store)
    assert store.candidates("timeBill", parse("customer ANY_OF [5001]").equalities) == []
    assert store.candidates("timeBill", parse("memo IS a").equalities) is None
