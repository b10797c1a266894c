"""The ERP sandbox keeps its records materialized in memory (sandboxes/erp/store.py): lists,
GETs and paging answer from memory exactly what the SQLite file holds, every write (record
API, finance admin routes, reset) keeps the two in step, and a restart loads the same state."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from sandboxes.erp.store import RecordStore
from tests.fixtures.erp_records import R, project, time_bill


def start(url: str):
    from sandboxes.erp.app import create_app
    from tests.fixtures.erp import demo_m2m

    app = create_app(url, m2m_dir=demo_m2m().directory, concurrency_limit=None)
    token = app.state.tokens.issue(["rest_webservices"])
    return app, TestClient(app, headers={"Authorization": f"Bearer {token}"})


def snapshot(http, q: str | None = None) -> list[dict]:
    """Every page of a list (limit 2) and every record GET of it: what a client can see."""
    pages, offset = [], 0
    while True:
        params = {"limit": 2, "offset": offset, **({"q": q} if q else {})}
        page = http.get(f"{R}/timeBill", params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        if not page.json()["hasMore"]:
            break
        offset += 2
    records = [http.get(f"{R}/timeBill/{item['id']}").json() for p in pages for item in p["items"]]
    return pages + records


def test_lists_and_gets_survive_a_restart_and_follow_every_write(tmp_path):
    url = f"sqlite:///{tmp_path}/erp.db"
    app, http = start(url)
    first, second = project(http), project(http)
    bills = [time_bill(http, job, day) for day in (3, 4, 5) for job in (first, second)]
    q = f"customer ANY_OF [{first}] AND isBilled IS false"
    page = http.get(f"{R}/timeBill", params={"q": q, "limit": 2}).json()
    assert (page["count"], page["totalResults"], page["hasMore"]) == (2, 3, True)
    assert [i["id"] for i in page["items"]] == bills[0:4:2]
    assert [link["rel"] for link in page["links"]] == ["next", "last", "self"]

    # writes through the record API and the admin routes show at once
    assert http.patch(f"{R}/timeBill/{bills[0]}", json={"memo": "changed"}).status_code == 204
    assert http.get(f"{R}/timeBill/{bills[0]}").json()["memo"] == "changed"
    closed = http.put("/__sandbox/accounting-periods/by-name/Dec 2026", json={"closed": True})
    assert closed.status_code == 200 and closed.json()["closed"] is True
    assert http.get(f"{R}/accountingPeriod/{closed.json()['id']}").json()["closed"] is True
    assert http.get(f"{R}/timeBill", params={"q": f"customer ANY_OF [{second}]"}).json()["totalResults"] == 3

    before = snapshot(http), snapshot(http, q)
    periods = http.get(f"{R}/accountingPeriod").json()
    _, again = start(url)  # a restart: the same file, a new store
    assert (snapshot(again), snapshot(again, q)) == before
    assert again.get(f"{R}/accountingPeriod").json() == periods
    assert again.get(f"{R}/accountingPeriod/{closed.json()['id']}").json()["closed"] is True
    # and the restarted sandbox numbers new records after the old ones
    assert int(time_bill(again, first, 6)) == int(bills[-1]) + 1

    # reset: back to the seed, in memory and in the file
    assert http.post("/__sandbox/reset").json() == {"reset": True}
    assert http.get(f"{R}/timeBill").json()["totalResults"] == 0
    assert http.get(f"{R}/job/{first}").status_code == 404
    assert start(url)[1].get(f"{R}/timeBill").json()["totalResults"] == 0


def test_store_memory_matches_the_database(tmp_path):
    from sandboxes.common.db import make_engine

    store = RecordStore(make_engine(f"sqlite:///{tmp_path}/store.db"))
    assert store.is_empty()
    a = store.create("timeBill", {"memo": "a", "customer": {"id": "5001"}}, external_id="e-a")
    b = store.create("timeBill", {"memo": "b"}, external_id="e-b")
    low = store.create("timeBill", {"memo": "low"}, record_id=3)  # below the others: ID order kept
    assert [r["id"] for r in store.all("timeBill")] == [str(low), str(a), str(b)]

    # a caller may change what get answers without changing the store
    got = store.get("timeBill", a)
    got["customer"]["id"] = "1"
    got["memo"] = "x"
    assert store.get("timeBill", a)["customer"] == {"id": "5001"}
    assert store.get_by_eid("timeBill", "e-a")["memo"] == "a"

    # a replace that renames the external ID: the old one finds nothing
    store.replace("timeBill", b, {"memo": "b2"}, "e-b2")
    assert store.get_by_eid("timeBill", "e-b") is None
    assert store.get_by_eid("timeBill", "e-b2")["memo"] == "b2"

    # a write the database refuses changes nothing in memory
    before = [dict(r) for r in store.all("timeBill")]
    with pytest.raises(IntegrityError):
        store.create("timeBill", {"memo": "dup"}, external_id="e-a")
    assert store.all("timeBill") == before
    assert store.create("timeBill", {"memo": "c"}) == b + 1

    # a second store on the file reads back exactly what the first holds
    reloaded = RecordStore(store.engine)
    assert reloaded.all("timeBill") == store.all("timeBill")
    assert reloaded.get_by_eid("timeBill", "e-b2") == store.get_by_eid("timeBill", "e-b2")
    store.clear()
    assert store.is_empty() and store.all("timeBill") == [] and store.get("timeBill", a) is None
    assert RecordStore(store.engine).is_empty()
