"""Time in the Kantata sandbox and the KantataClient time methods, over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.domain.delivery import ApprovalState
from q2c.vendors.http import NOT_FOUND_TYPE, REJECTED_TYPE
from q2c.vendors.kantata.client import KantataClient
from stack.demo_env import DEMO_PSA_TOKEN

AUTH = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
STORIES = (("Discovery & Requirements Workshops", True), ("Pipeline Build", True), ("Internal QA", False))


@pytest.fixture
def api(psa_sandbox):
    with httpx.Client(base_url=f"{psa_sandbox.url}/api/v1", headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def admin(psa_sandbox):
    with httpx.Client(base_url=f"{psa_sandbox.url}/__sandbox", timeout=10) as client:
        yield client


def first(body: dict) -> dict:
    ref = body["results"][0]
    return body[ref["key"]][ref["id"]]


def new_workspace(api: httpx.Client, roles: tuple[str, ...] = ("502", "503")) -> tuple[str, list[str]]:
    """A fresh workspace with three stories (the last non-billable) and resource requests."""
    ws = first(
        api.post(
            "/workspaces.json",
            json={"workspace": {"title": f"Time test {uuid.uuid4().hex[:10]}", "currency": "USD", "status": "Active"}},
        ).json()
    )
    story_ids = [
        first(
            api.post(
                "/stories.json", json={"story": {"title": title, "workspace_id": ws["id"], "billable": billable}}
            ).json()
        )["id"]
        for title, billable in STORIES
    ]
    for role_id in roles:
        api.post(
            "/resource_requests.json",
            json={"resource_request": {"workspace_id": ws["id"], "role_id": role_id, "hours": 100}},
        ).raise_for_status()
    return ws["id"], story_ids


def bulk(admin: httpx.Client, entries: list[dict], approved: bool) -> list[str]:
    r = admin.post("/time/bulk", json={"time_entries": entries, "approved": approved})
    assert r.status_code == 200, r.text
    return r.json()["time_entry_ids"]


def entry(ws: str, story: str, day: str, minutes: int = 120, user: str = "202", **extra) -> dict:
    return {
        "workspace_id": ws,
        "story_id": story,
        "user_id": user,
        "date_performed": day,
        "time_in_minutes": minutes,
        **extra,
    }


def shape(api: httpx.Client, ws: str) -> list[tuple]:
    body = api.get("/time_entries.json", params={"workspace_id": ws, "per_page": 200}).json()
    stories = {s: i for i, s in enumerate(sorted({o["story_id"] for o in body["time_entries"].values()}, key=int))}
    return [
        (
            o["date_performed"],
            o["time_in_minutes"],
            o["user_id"],
            o["role_id"],
            o["billable"],
            o["approved"],
            o["notes"].split(": ")[0],
        )
        for o in (body["time_entries"][r["id"]] for r in body["results"])
    ] + [len(stories)]


# --- generator --------------------------------------------------------------------------


def test_generator_is_deterministic_with_weekly_approvals(api, admin, psa_sandbox):
    runs = []
    for _ in range(2):
        ws, _stories = new_workspace(api)
        r = admin.post(
            "/time/generate",
            json={
                "workspace_id": ws,
                "start_date": "2025-03-03",
                "end_date": "2025-03-30",
                "entries_per_week": 3,
                "seed": 42,
            },
        )
        assert r.status_code == 200, r.text
        runs.append((ws, r.json()))
    (ws1, out1), (ws2, out2) = runs
    assert shape(api, ws1) == shape(api, ws2)
    assert out1["count"] == 4 * 2 * 3 and len(out1["time_entry_ids"]) == 24
    assert set(out1["minutes_by_role"]) == {"Senior Consultant", "Consultant"}
    assert sum(out1["minutes_by_role"].values()) == out1["total_minutes"] > out1["billable_minutes"] > 0
    assert out1["minutes_by_role"] == out2["minutes_by_role"]

    entries = [e for e in psa_sandbox.records("time_entries") if e["workspace_id"] == ws1]
    assert all(e["approved"] for e in entries)
    for e in entries:
        day = date.fromisoformat(e["date_performed"])
        assert day.weekday() < 5 and date(2025, 3, 3) <= day <= date(2025, 3, 30)
        assert 60 <= e["time_in_minutes"] <= 480 and e["time_in_minutes"] % 15 == 0
    assert {e["billable"] for e in entries} == {True, False}

    subs = api.get("/timesheet_submissions.json", params={"workspace_id": ws1}).json()
    assert subs["count"] == 8 == len(out1["timesheet_submission_ids"])  # 4 weeks x 2 consultants
    by_id = {e["id"]: e for e in entries}
    for sub in subs["timesheet_submissions"].values():
        assert sub["status"] == "approved" and len(sub["time_entry_ids"]) == 3
        days = {date.fromisoformat(by_id[i]["date_performed"]) for i in sub["time_entry_ids"]}
        assert len({d - timedelta(days=d.weekday()) for d in days}) == 1  # one calendar week
        assert {by_id[i]["user_id"] for i in sub["time_entry_ids"]} == {sub["user_id"]}

    ws3, _ = new_workspace(api)
    admin.post(
        "/time/generate",
        json={
            "workspace_id": ws3,
            "start_date": "2025-03-03",
            "end_date": "2025-03-30",
            "entries_per_week": 3,
            "seed": 7,
        },
    )
    assert shape(api, ws3) != shape(api, ws1)


def test_generator_without_approval_and_explicit_roles(api, admin):
    ws, _ = new_workspace(api)
    out = admin.post(
        "/time/generate",
        json={
            "workspace_id": ws,
            "start_date": "2025-04-07",
            "end_date": "2025-04-11",
            "approve": False,
            "seed": 1,
            "roles": ["solution architect"],
            "billable_only": True,
        },
    ).json()
    assert out["count"] == 5 and out["users"] == {"Solution Architect": "204"} and not out["approved"]
    assert out["billable_minutes"] == out["total_minutes"]
    pending = api.get("/timesheet_submissions.json", params={"workspace_id": ws, "status": "pending"}).json()
    assert pending["count"] == 1
    assert api.get("/time_entries.json", params={"workspace_id": ws, "approved": "true"}).json()["count"] == 0
    bad = admin.post(
        "/time/generate",
        json={"workspace_id": ws, "start_date": "2025-04-07", "end_date": "2025-04-11", "roles": ["Partner"]},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "roles"


async def test_generate_time_through_connector(api, psa_client: KantataClient):
    ws, _ = new_workspace(api, roles=("501",))
    out = await psa_client.generate_time(ws, start=date(2025, 5, 5), end=date(2025, 5, 16), entries_per_week=2, seed=3)
    assert out["count"] == 4 and out["approved"]
    entries, more = await psa_client.list_approved_time(ws, through=date(2025, 5, 31))
    assert [e.psa_id for e in entries] == sorted(
        out["time_entry_ids"], key=lambda i: (next(x.date_performed for x in entries if x.psa_id == i), int(i))
    )
    assert not more and {e.role for e in entries} == {"Engagement Manager"}
    assert {e.person_name for e in entries} == {"Priya Raman"}


# --- reading approved time ----------------------------------------------------------------


async def test_list_approved_time_filters(api, admin, psa_client: KantataClient):
    ws, (s1, s2, qa) = new_workspace(api)
    approved = bulk(
        admin,
        [
            entry(ws, s1, "2025-03-04", 90, notes="Workshop"),
            entry(ws, qa, "2025-03-03", 60, user="203"),
            entry(ws, s2, "2025-03-12", 480, user="207", role_id="504"),
            entry(ws, s1, "2025-04-01", 30),
        ],
        approved=True,
    )
    draft = bulk(admin, [entry(ws, s1, "2025-03-05", 45)], approved=False)

    entries, more = await psa_client.list_approved_time(ws, through=date(2025, 3, 31))
    assert not more
    assert [e.psa_id for e in entries] == [approved[1], approved[0], approved[2]]  # by date
    first_entry = entries[1]
    assert first_entry.model_dump() == {
        "psa_id": approved[0],
        "person": "202",
        "person_name": "Marcus Oyelaran",
        "role": "Senior Consultant",
        "task_id": s1,
        "workspace_id": ws,
        "date_performed": date(2025, 3, 4),
        "minutes": 90,
        "billable": True,
        "approval": ApprovalState.APPROVED,
        "notes": "Workshop",
        "role_issue": None,
    }
    assert entries[0].billable is False and entries[0].role == "Consultant"
    assert entries[2].role == "Solution Architect"  # the entry's own role wins over the user's
    assert draft[0] not in {e.psa_id for e in entries}

    assert [e.psa_id for e in (await psa_client.list_approved_time(ws, through=date(2025, 3, 3)))[0]] == [approved[1]]
    everything, _ = await psa_client.list_approved_time(ws, through=date(2025, 12, 31))
    assert len(everything) == 4
    only, _ = await psa_client.list_approved_time(
        ws, through=date(2025, 12, 31), only_ids=[approved[3], draft[0], approved[0]]
    )
    assert [e.psa_id for e in only] == [approved[0], approved[3]]
    assert await psa_client.list_approved_time(ws, through=date(2025, 12, 31), only_ids=[]) == ([], False)

    await psa_client.mark_time_posted(approved[0], "TB-1")
    unposted, _ = await psa_client.list_approved_time(ws, through=date(2025, 12, 31), unposted_only=True)
    assert approved[0] not in {e.psa_id for e in unposted} and len(unposted) == 3
    all_of_them, _ = await psa_client.list_approved_time(ws, through=date(2025, 12, 31))
    assert len(all_of_them) == 4


async def test_pages_do_not_move_when_entries_are_marked_posted(api, admin, psa_client: KantataClient):
    """The old "unposted" filter moved the list under the reader; marking is now invisible to it."""
    ws, (s1, _, _) = new_workspace(api)
    ids = bulk(admin, [entry(ws, s1, f"2025-06-0{d}", 60) for d in (2, 3, 4, 5, 6)], approved=True)
    page1, more = await psa_client.list_approved_time(ws, through=date(2025, 6, 30), per_page=2)
    assert [e.psa_id for e in page1] == ids[:2] and more
    page3, more = await psa_client.list_approved_time(ws, through=date(2025, 6, 30), per_page=2, page=3)
    assert [e.psa_id for e in page3] == ids[4:] and not more

    # read page after page, marking each posted as it comes: nothing is skipped
    seen: list[str] = []
    page = 1
    while True:
        batch, more = await psa_client.list_approved_time(ws, through=date(2025, 6, 30), per_page=2, page=page)
        for e in batch:
            await psa_client.mark_time_posted(e.psa_id, f"TB-{e.psa_id}")
        seen += [e.psa_id for e in batch]
        if not more:
            break
        page += 1
    assert seen == ids
    # client-side "unposted": every entry carries q2c's reference now; the page count stays
    left, more = await psa_client.list_approved_time(ws, through=date(2025, 6, 30), per_page=2, unposted_only=True)
    assert left == [] and more


async def test_read_approved_time_sees_late_approval_and_reapproval(api, admin, psa_client: KantataClient):
    """The watermark read: approved entries changed after a moment, whatever their date."""
    ws, (s1, s2, _) = new_workspace(api)
    early = bulk(admin, [entry(ws, s1, "2025-01-06", 60), entry(ws, s1, "2025-01-07", 90)], approved=True)
    first_read = await psa_client.read_approved_time(ws)
    assert [e.psa_id for e in first_read.entries] == early
    assert first_read.stable and first_read.server_time is not None and first_read.pages == 1
    assert set(first_read.updated_at) == set(early)

    watermark = max(first_read.updated_at.values())
    assert (await psa_client.read_approved_time(ws, updated_after=watermark)).entries == []

    # a January entry approved in March is read by a watermark set in February
    late = bulk(admin, [entry(ws, s2, "2025-01-08", 30, user="203")], approved=False)
    await asyncio.sleep(1.1)  # Kantata's timestamps have whole seconds
    sub = first(
        api.post(
            "/timesheet_submissions.json",
            json={
                "timesheet_submission": {
                    "workspace_id": ws,
                    "user_id": "203",
                    "start_date": "2025-01-06",
                    "end_date": "2025-01-12",
                }
            },
        ).json()
    )
    assert api.put(f"/timesheet_submissions/{sub['id']}/approve").status_code == 200
    later = await psa_client.read_approved_time(ws, updated_after=watermark)
    assert [e.psa_id for e in later.entries] == late and later.entries[0].date_performed == date(2025, 1, 8)

    # withdrawing the approval takes it out; editing and approving again brings it back changed
    assert api.put(f"/timesheet_submissions/{sub['id']}/cancel").status_code == 200
    assert (await psa_client.read_approved_time(ws, only_ids=late)).entries == []
    assert api.put(f"/time_entries/{late[0]}.json", json={"time_entry": {"time_in_minutes": 45}}).status_code == 200
    again = first(
        api.post(
            "/timesheet_submissions.json",
            json={
                "timesheet_submission": {
                    "workspace_id": ws,
                    "user_id": "203",
                    "start_date": "2025-01-06",
                    "end_date": "2025-01-12",
                }
            },
        ).json()
    )
    assert api.put(f"/timesheet_submissions/{again['id']}/approve").status_code == 200
    reread = await psa_client.read_approved_time(ws, updated_after=watermark)
    assert [(e.psa_id, e.minutes) for e in reread.entries] == [(late[0], 45)]


def test_http_filters_and_envelope(api, admin):
    ws, (s1, _, _) = new_workspace(api)
    ids = bulk(
        admin, [entry(ws, s1, "2025-07-01"), entry(ws, s1, "2025-07-15"), entry(ws, s1, "2025-07-31")], approved=True
    )
    body = api.get(
        "/time_entries.json", params={"workspace_id": ws, "date_performed_between": "2025-07-01:2025-07-15"}
    ).json()
    # Kantata's default order: date_performed, newest first
    assert [r["id"] for r in body["results"]] == [ids[1], ids[0]] and body["meta"]["page_count"] == 1
    assert set(body["time_entries"][ids[0]]) >= {
        "id",
        "workspace_id",
        "story_id",
        "user_id",
        "role_id",
        "date_performed",
        "time_in_minutes",
        "billable",
        "approved",
        "notes",
        "created_at",
        "updated_at",
    }
    later = api.get("/time_entries.json", params={"workspace_id": ws, "updated_after": "2000-01-01T00:00:00Z"}).json()
    assert later["count"] == 3
    assert (
        api.get("/time_entries.json", params={"workspace_id": ws, "updated_after": "2999-01-01T00:00:00+00:00"}).json()[
            "count"
        ]
        == 0
    )
    assert api.get("/time_entries.json", params={"date_performed_between": "July"}).status_code == 400
    included = api.get("/time_entries.json", params={"workspace_id": ws, "include": "user,story"}).json()
    assert set(included["users"]) == {"202"} and set(included["stories"]) == {s1}
    ref = api.post(
        "/external_references.json",
        json={
            "external_reference": {
                "subject_type": "TimeEntry",
                "subject_id": ids[1],
                "service_name": "q2c",
                "service_model": "timeBill",
                "service_model_ref": "TB-9",
            }
        },
    )
    assert ref.status_code == 200
    ref_id = first(ref.json())["id"]
    # the references come the Kantata way: a top-level collection and an id list on each entry
    with_refs = api.get(
        "/time_entries.json", params={"workspace_id": ws, "include": "external_references", "order": "id:asc"}
    ).json()
    assert [r["id"] for r in with_refs["results"]] == ids
    assert set(with_refs["external_references"]) == {ref_id}
    assert with_refs["external_references"][ref_id]["service_model_ref"] == "TB-9"
    assert [with_refs["time_entries"][i]["external_reference_ids"] for i in ids] == [[], [ref_id], []]
    assert {"key": "external_references", "id": ref_id} not in with_refs["results"]
    # no invented "without reference" filter: an unknown parameter filters nothing
    unknown = api.get("/time_entries.json", params={"workspace_id": ws, "without_external_reference": "q2c"}).json()
    assert unknown["count"] == 3


# --- writing and approving time ---------------------------------------------------------------


def test_create_validation(api):
    ws, (s1, _, _) = new_workspace(api)
    other_ws, (other_story, _, _) = new_workspace(api)
    cases = [
        ({"story_id": other_story}, "story_id"),
        ({"time_in_minutes": 0}, "time_in_minutes"),
        ({"time_in_minutes": 1441}, "time_in_minutes"),
        ({"user_id": "999"}, "user_id"),
        ({"date_performed": "2025-02-30"}, "date_performed"),
        ({"workspace_id": "999999"}, "workspace_id"),
    ]
    for change, field in cases:
        r = api.post("/time_entries.json", json={"time_entry": {**entry(ws, s1, "2025-03-03"), **change}})
        assert r.status_code == 422, (change, r.text)
        assert any(e["field"] == field for e in r.json()["errors"]), (change, r.json())
    ok = api.post("/time_entries.json", json={"time_entry": entry(ws, s1, "2025-03-03", 1440)})
    assert ok.status_code == 200 and first(ok.json())["approved"] is False
    assert first(ok.json())["role_id"] == "502" and first(ok.json())["billable"] is True


def test_timesheet_reject_then_approve_and_lock(api):
    ws, (s1, s2, _) = new_workspace(api)
    made = [
        first(api.post("/time_entries.json", json={"time_entry": entry(ws, s1, d)}).json())["id"]
        for d in ("2025-03-03", "2025-03-04")
    ]
    other_user = first(
        api.post("/time_entries.json", json={"time_entry": entry(ws, s1, "2025-03-04", user="203")}).json()
    )["id"]
    assert api.put(f"/time_entries/{made[0]}.json", json={"time_entry": {"time_in_minutes": 150}}).status_code == 200

    submit = {
        "timesheet_submission": {
            "workspace_id": ws,
            "user_id": "202",
            "start_date": "2025-03-03",
            "end_date": "2025-03-09",
        }
    }
    sub = first(api.post("/timesheet_submissions.json", json=submit).json())
    assert sub["status"] == "pending" and sorted(sub["time_entry_ids"]) == sorted(made)
    assert other_user not in sub["time_entry_ids"]
    locked = api.put(f"/time_entries/{made[0]}.json", json={"time_entry": {"notes": "x"}})
    assert locked.status_code == 422
    assert api.post("/timesheet_submissions.json", json=submit).status_code == 422  # nothing left to submit

    rejected = api.put(
        f"/timesheet_submissions/{sub['id']}/reject", json={"resolution": {"description": "Wrong task on Tuesday"}}
    )
    assert first(rejected.json())["status"] == "rejected"
    fix = api.put(f"/time_entries/{made[1]}.json", json={"time_entry": {"story_id": s2}})
    assert fix.status_code == 200 and first(fix.json())["approved"] is False

    again = first(api.post("/timesheet_submissions.json", json=submit).json())
    approved = api.put(f"/timesheet_submissions/{again['id']}/approve.json")
    assert first(approved.json())["status"] == "approved"
    assert api.put(f"/timesheet_submissions/{again['id']}/approve.json").status_code == 422
    for entry_id in made:
        shown = first(api.get(f"/time_entries/{entry_id}.json").json())
        assert shown["approved"] is True
        r = api.put(f"/time_entries/{entry_id}.json", json={"time_entry": {"time_in_minutes": 30}})
        assert r.status_code == 422 and r.json()["errors"][0]["message"] == "Time entry is locked"
        assert api.delete(f"/time_entries/{entry_id}.json").status_code == 422
    statuses = api.get("/timesheet_submissions.json", params={"workspace_id": ws, "status": "approved"}).json()
    assert [r["id"] for r in statuses["results"]] == [again["id"]]


async def test_close_workspace_rejects_time(api, admin, psa_client: KantataClient):
    ws, (s1, _, _) = new_workspace(api)
    await psa_client.close_workspace(ws)
    await psa_client.close_workspace(ws)
    shown = first(api.get(f"/workspaces/{ws}.json").json())
    assert shown["status"]["message"] == "closed"
    r = api.post("/time_entries.json", json={"time_entry": entry(ws, s1, "2025-03-03")})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "workspace_id"
    assert "closed" in r.json()["errors"][0]["message"]
    with pytest.raises(ApplicationError) as err:
        await psa_client.generate_time(ws, start=date(2025, 3, 3), end=date(2025, 3, 7))
    assert err.value.type == REJECTED_TYPE and err.value.non_retryable
    archived, (s_arch, _, _) = new_workspace(api)
    api.put(f"/workspaces/{archived}.json", json={"workspace": {"archived": True}}).raise_for_status()
    assert api.post("/time_entries.json", json={"time_entry": entry(archived, s_arch, "2025-03-03")}).status_code == 422
    with pytest.raises(ApplicationError) as err:
        await psa_client.close_workspace("999999")
    assert err.value.type == NOT_FOUND_TYPE


async def test_mark_time_posted_is_idempotent(api, admin, psa_sandbox, psa_client: KantataClient):
    ws, (s1, _, _) = new_workspace(api)
    (entry_id,) = bulk(admin, [entry(ws, s1, "2025-08-04")], approved=True)
    await psa_client.mark_time_posted(entry_id, "TB-500")
    await psa_client.mark_time_posted(entry_id, "TB-500")
    refs = [
        r
        for r in psa_sandbox.records("external_references")
        if r["subject_type"] == "TimeEntry" and r["subject_id"] == entry_id
    ]
    assert len(refs) == 1 and refs[0]["service_model"] == "timeBill" and refs[0]["service_model_ref"] == "TB-500"
    await psa_client.mark_time_posted(entry_id, "TB-501")  # the ERP record was recreated
    refs = [
        r
        for r in psa_sandbox.records("external_references")
        if r["subject_type"] == "TimeEntry" and r["subject_id"] == entry_id
    ]
    assert [r["service_model_ref"] for r in refs] == ["TB-501"]


async def test_workspace_tasks(api, psa_client: KantataClient):
    ws, story_ids = new_workspace(api)
    tasks = await psa_client.workspace_tasks(ws)
    assert [(t.name, t.billable, t.psa_story_id) for t in tasks] == [
        (title, billable, sid) for (title, billable), sid in zip(STORIES, story_ids, strict=True)
    ]
    with pytest.raises(ApplicationError) as err:
        await psa_client.workspace_tasks("999999")
    assert err.value.type == NOT_FOUND_TYPE


def test_bulk_validates_all_or_nothing(api, admin, psa_sandbox):
    ws, (s1, _, _) = new_workspace(api)
    before = len(psa_sandbox.records("time_entries"))
    r = admin.post("/time/bulk", json={"time_entries": [entry(ws, s1, "2025-03-03"), entry(ws, s1, "2025-03-04", 0)]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "time_entries[1].time_in_minutes"
    assert len(psa_sandbox.records("time_entries")) == before


# --- the role an entry is booked under --------------------------------------------------------


def test_an_entry_keeps_the_role_it_was_booked_under(api, admin, psa_sandbox):
    """The role is fixed on the entry when it is booked: the user's project role on the
    workspace (their workspace resource), else their account role; a later role change does
    not touch it."""
    ws, (s1, _, _) = new_workspace(api)
    resource = first(
        api.post(
            "/workspace_resources.json",
            json={"workspace_resource": {"workspace_id": ws, "user_id": "206", "role_id": "504"}},
        ).json()
    )
    assert (resource["user_id"], resource["role_id"], resource["label"]) == ("206", "504", "Solution Architect")
    listed = api.get("/workspace_resources.json", params={"workspace_id": ws, "user_id": "206"}).json()
    assert [r["id"] for r in listed["workspace_resources"].values()] == [resource["id"]]
    missing = api.post("/workspace_resources.json", json={"workspace_resource": {"workspace_id": ws}})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "role_id"

    as_architect, as_consultant = bulk(
        admin, [entry(ws, s1, "2025-06-02", user="206"), entry(ws, s1, "2025-06-02", user="203")], approved=True
    )
    admin.put("/users/206", json={"role_id": "502"}).raise_for_status()
    admin.put("/users/203", json={"role_id": None}).raise_for_status()
    try:
        assert api.get("/users.json", params={"only": "203"}).json()["users"]["203"]["role_id"] is None
        [no_role] = bulk(admin, [entry(ws, s1, "2025-06-03", user="203")], approved=True)
        roles = {e["id"]: e["role_id"] for e in psa_sandbox.records("time_entries")}
        assert (roles[as_architect], roles[as_consultant], roles[no_role]) == ("504", "503", None)
        assert admin.put("/users/203", json={"role_id": "999"}).status_code == 422
        assert admin.put("/users/999999", json={"role_id": "503"}).status_code == 404
    finally:
        admin.put("/users/206", json={"role_id": "503"}).raise_for_status()
        admin.put("/users/203", json={"role_id": "503"}).raise_for_status()
