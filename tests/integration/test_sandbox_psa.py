"""The Kantata sandbox over real HTTP: envelope, paging, filters, auth, validation, faults."""

from __future__ import annotations

import uuid

import httpx
import pytest

from sandboxes.common.server import ServerThread
from stack.demo_env import DEMO_PSA_TOKEN

AUTH = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}


@pytest.fixture
def api(psa_sandbox):
    with httpx.Client(base_url=f"{psa_sandbox.url}/api/v1", headers=AUTH, timeout=10) as client:
        yield client


def new_workspace(api: httpx.Client, title: str | None = None) -> dict:
    r = api.post(
        "/workspaces.json",
        json={
            "workspace": {
                "title": title or f"WS {uuid.uuid4()}",
                "budget_in_cents": 1250000,
                "currency": "EUR",
                "start_date": "2025-03-01",
                "due_date": "2025-09-30",
                "creator_role": "maven",
            }
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body["workspaces"][body["results"][0]["id"]]


def test_envelope_shape_and_create(api):
    r = api.post("/workspaces.json", json={"workspace": {"title": "Envelope check", "currency": "GBP"}})
    body = r.json()
    assert r.status_code == 200
    assert body["count"] == 1 and body["meta"]["count"] == 1
    assert set(body["meta"]) == {"count", "page_count", "page_number", "page_size"}
    (ref,) = body["results"]
    assert ref["key"] == "workspaces" and isinstance(ref["id"], str) and ref["id"].isdigit()
    ws = body["workspaces"][ref["id"]]
    assert ws["title"] == "Envelope check" and ws["currency"] == "GBP" and ws["id"] == ref["id"]


def test_paging_defaults_cap_and_only(api):
    tag = uuid.uuid4().hex[:8]
    ids = [new_workspace(api, f"Paging {tag} {i}")["id"] for i in range(5)]
    body = api.get("/workspaces.json", params={"search": f"Paging {tag}", "per_page": 2, "page": 3}).json()
    assert body["count"] == 5
    assert body["meta"] == {"count": 5, "page_count": 3, "page_number": 3, "page_size": 2}
    assert [r["id"] for r in body["results"]] == ids[4:]
    assert api.get("/workspaces.json").json()["meta"]["page_size"] == 20
    assert api.get("/workspaces.json", params={"per_page": 1000}).json()["meta"]["page_size"] == 200
    only = api.get("/workspaces.json", params={"only": f"{ids[0]},{ids[2]}"}).json()
    assert [r["id"] for r in only["results"]] == [ids[0], ids[2]]


def test_search_is_case_insensitive_contains(api):
    opp = f"006{uuid.uuid4().hex[:12]}"
    ws = new_workspace(api, f"Acme Data Platform [{opp}]")
    body = api.get("/workspaces.json", params={"search": f"[{opp.upper()}]"}).json()
    assert [r["id"] for r in body["results"]] == [ws["id"]]
    assert api.get("/workspaces.json", params={"search": "no-such-title-xyz"}).json()["count"] == 0


def test_stories_requests_references_and_include(api):
    ws = new_workspace(api)
    story = api.post(
        "/stories.json",
        json={"story": {"title": "Internal QA", "workspace_id": ws["id"], "story_type": "task", "billable": False}},
    )
    assert story.status_code == 200
    s = story.json()["stories"][story.json()["results"][0]["id"]]
    assert s["billable"] is False and s["workspace_id"] == ws["id"]
    rr = api.post(
        "/resource_requests.json",
        json={
            "resource_request": {
                "workspace_id": ws["id"],
                "role_id": "502",
                "hours": 120.5,
                "start_date": "2025-03-01",
                "end_date": "2025-06-30",
                "status": "open",
            }
        },
    ).json()
    req = rr["resource_requests"][rr["results"][0]["id"]]
    assert req["hours"] == 120.5 and req["role_id"] == "502"
    ref = api.post(
        "/external_references.json",
        json={
            "external_reference": {
                "subject_type": "Workspace",
                "subject_id": ws["id"],
                "service_name": "q2c",
                "service_model": "opportunity",
                "service_model_ref": "006XYZ",
                "status": "synced",
            }
        },
    )
    assert ref.status_code == 200
    found = api.get(
        "/external_references.json",
        params={
            "subject_type": "Workspace",
            "subject_id": ws["id"],
            "service_name": "q2c",
            "service_model": "opportunity",
            "service_model_ref": "006XYZ",
        },
    ).json()
    assert found["count"] == 1
    assert api.get("/stories.json", params={"workspace_id": ws["id"]}).json()["count"] == 1
    assert api.get("/resource_requests.json", params={"workspace_id": ws["id"]}).json()["count"] == 1
    shown = api.get(
        f"/workspaces/{ws['id']}.json", params={"include": "stories,resource_requests,external_references"}
    ).json()
    obj = shown["workspaces"][ws["id"]]
    assert obj["story_ids"] == [s["id"]] and set(shown["stories"]) == {s["id"]}
    assert len(obj["external_reference_ids"]) == 1 and len(obj["resource_request_ids"]) == 1
    assert shown["results"] == [{"key": "workspaces", "id": ws["id"]}]


def test_update_workspace(api):
    ws = new_workspace(api)
    r = api.put(f"/workspaces/{ws['id']}.json", json={"workspace": {"title": "Renamed", "status": "Active"}})
    assert r.status_code == 200
    assert r.json()["workspaces"][ws["id"]]["title"] == "Renamed"
    bad = api.put(f"/workspaces/{ws['id']}.json", json={"workspace": {"title": " "}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "title"
    assert api.put("/workspaces/999999.json", json={"workspace": {"title": "x"}}).status_code == 404


@pytest.mark.parametrize(
    "path,payload,field",
    [
        ("/workspaces.json", {"workspace": {"description": "no title"}}, "title"),
        ("/workspaces.json", {"workspace": {"title": "x", "start_date": "2025-13-40"}}, "start_date"),
        ("/stories.json", {"story": {"workspace_id": "7001"}}, "title"),
        ("/stories.json", {"story": {"title": "t", "workspace_id": "999999"}}, "workspace_id"),
        (
            "/resource_requests.json",
            {"resource_request": {"workspace_id": "7001", "role_id": "999", "hours": 8}},
            "role_id",
        ),
        (
            "/resource_requests.json",
            {"resource_request": {"workspace_id": "999999", "role_id": "501", "hours": 8}},
            "workspace_id",
        ),
        (
            "/resource_requests.json",
            {"resource_request": {"workspace_id": "7001", "role_id": "501", "hours": -1}},
            "hours",
        ),
        (
            "/external_references.json",
            {
                "external_reference": {
                    "subject_type": "Workspace",
                    "subject_id": "999999",
                    "service_name": "q2c",
                    "service_model": "opportunity",
                    "service_model_ref": "006",
                }
            },
            "subject_id",
        ),
    ],
)
def test_validation_errors_name_the_field(api, path, payload, field):
    r = api.post(path, json=payload)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert any(e["type"] == "validation" and e["field"] == field and e["message"] for e in errors)


def test_title_blank_message_is_kantatas(api):
    r = api.post("/workspaces.json", json={"workspace": {"title": ""}})
    assert r.json() == {"errors": [{"type": "validation", "message": "Title can't be blank", "field": "title"}]}


def test_missing_root_key_and_not_found(api):
    assert api.post("/workspaces.json", json={"title": "x"}).status_code == 400
    r = api.get("/workspaces/999999.json")
    assert r.status_code == 404 and r.json()["errors"][0]["type"] == "system"


def test_auth_required(psa_sandbox):
    base = f"{psa_sandbox.url}/api/v1/workspaces.json"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {DEMO_PSA_TOKEN}"}):
        r = httpx.get(base, headers=headers)
        assert r.status_code == 401
        assert r.json()["errors"][0]["type"] == "oauth"


def test_token_revoke_until_reset(tmp_path):
    from sandboxes.psa.app import create_app

    server = ServerThread(create_app(f"sqlite:///{tmp_path / 'psa.db'}")).start()
    try:
        url = f"{server.url}/api/v1/roles.json"
        assert httpx.get(url, headers=AUTH).status_code == 200
        ws = httpx.post(
            f"{server.url}/api/v1/workspaces.json", headers=AUTH, json={"workspace": {"title": "to be reset"}}
        ).json()
        assert httpx.post(f"{server.url}/__sandbox/tokens/revoke").json() == {"revoked": 1}
        assert httpx.get(url, headers=AUTH).status_code == 401
        httpx.post(f"{server.url}/__sandbox/reset").raise_for_status()
        assert httpx.get(url, headers=AUTH).status_code == 200
        titles = [w["title"] for w in httpx.get(f"{server.url}/__sandbox/records/workspaces").json()["records"]]
        assert "to be reset" not in titles and ws["count"] == 1
    finally:
        server.stop()


def test_faults_rendered_in_kantata_shape(psa_sandbox, api):
    try:
        psa_sandbox.set_faults(rate_429=1.0, retry_after_seconds=7)
        r = api.get("/roles.json")
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert r.json()["errors"][0]["type"] == "rate_limit"
        psa_sandbox.set_faults(error_rate=1.0)
        r = api.get("/roles.json")
        assert r.status_code == 503 and r.json()["errors"][0]["type"] == "system"
    finally:
        psa_sandbox.reset_faults()
    assert api.get("/roles.json").status_code == 200


def test_seeded_roles_users_templates(api, psa_sandbox):
    roles = {r["name"] for r in api.get("/roles.json").json()["roles"].values()}
    assert roles == {"Engagement Manager", "Senior Consultant", "Consultant", "Solution Architect", "Project Manager"}
    users = api.get("/users.json").json()["users"].values()
    assert all(u["full_name"] and "@" in u["email_address"] for u in users) and len(users) >= 5
    templates = list(api.get("/workspace_templates.json").json()["workspace_templates"].values())
    lines = {t["service_line"] for t in templates}
    assert lines == {"Data & Analytics", "ERP Implementation", "Advisory", "Cloud Migration"}
    for t in templates:
        assert 3 <= len(t["stories"]) <= 6
        assert any(not s["billable"] for s in t["stories"])
    assert len(psa_sandbox.records("workspace_templates")) == 4


def test_seeding_is_idempotent(tmp_path):
    from sandboxes.psa.app import create_app

    db = f"sqlite:///{tmp_path / 'psa.db'}"
    counts = []
    for _ in range(2):
        server = ServerThread(create_app(db)).start()
        try:
            counts.append(
                {
                    t: httpx.get(f"{server.url}/__sandbox/records/{t}").json()["count"]
                    for t in ("roles", "users", "workspace_templates", "workspaces", "stories")
                }
            )
        finally:
            server.stop()
    assert counts[0] == counts[1] and counts[0]["roles"] == 5


def test_records_endpoint_rejects_unknown_type(psa_sandbox):
    r = httpx.get(f"{psa_sandbox.url}/__sandbox/records/nope")
    assert r.status_code == 404


# --- issue 9: Kantata's documented list semantics, and no 5xx for bad input -------------------


def test_limit_and_offset_only_together_as_kantatas_framework(api):
    """Brainstem (Kantata's API framework) honours limit+offset only when both are given."""
    tag = uuid.uuid4().hex[:8]
    ids = [new_workspace(api, f"Offset {tag} {i}")["id"] for i in range(5)]
    params = {"search": f"Offset {tag}"}
    body = api.get("/workspaces.json", params={**params, "limit": 2, "offset": 3}).json()
    assert [r["id"] for r in body["results"]] == ids[3:]
    assert body["meta"] == {"count": 5, "page_count": 3, "page_number": 2, "page_size": 2}
    alone = api.get("/workspaces.json", params={**params, "limit": 2}).json()
    assert [r["id"] for r in alone["results"]] == ids  # limit alone is ignored: default page of 20
    capped = api.get("/workspaces.json", params={**params, "per_page": 100000}).json()
    assert capped["meta"]["page_size"] == 200
    far = api.get("/workspaces.json", params={**params, "page": "9" * 40})
    assert far.status_code == 200 and far.json()["results"] == [] and far.json()["count"] == 5


@pytest.mark.parametrize("bad", ["9223372036854775808", "99999999999999999999", "0", "-3", "abc", "1.5"])
def test_impossible_ids_answer_4xx_in_kantatas_error_shape(api, bad):
    checks = [
        ("GET", f"/workspaces/{bad}.json", None, None, 404),
        ("PUT", f"/workspaces/{bad}.json", None, {"workspace": {"title": "x"}}, 404),
        ("GET", f"/stories/{bad}.json", None, None, 404),
        ("GET", f"/time_entries/{bad}.json", None, None, 404),
        ("DELETE", f"/time_entries/{bad}.json", None, None, 404),
        ("PUT", f"/timesheet_submissions/{bad}/approve", None, None, 404),
        ("PUT", f"/timesheet_submissions/{bad}/cancel.json", None, None, 404),
        ("PUT", f"/external_references/{bad}.json", None, {"external_reference": {"status": "x"}}, 404),
        ("GET", "/time_entries.json", {"workspace_id": bad}, None, 400),
        ("GET", "/stories.json", {"workspace_id": bad}, None, 400),
        ("GET", "/timesheet_submissions.json", {"user_id": bad}, None, 400),
        ("POST", "/stories.json", None, {"story": {"title": "t", "workspace_id": bad}}, 422),
    ]
    for method, path, params, body, status in checks:
        r = api.request(method, path, params=params, json=body)
        assert r.status_code == status, (method, path, params, r.status_code, r.text)
        (err,) = r.json()["errors"]
        assert set(err) >= {"type", "message"}, r.json()
    # `only` keeps the ids that can exist and matches nothing for the others
    assert api.get("/workspaces.json", params={"only": bad}).json()["count"] == 0


def test_values_beyond_64_bits_in_bodies_are_validation_errors(api):
    ws = new_workspace(api)
    r = api.post("/workspaces.json", json={"workspace": {"title": "Big", "budget_in_cents": 10**25}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "budget_in_cents"
    r = api.post("/external_references.json", json={"external_reference": {"subject_type": "Workspace",
        "subject_id": ws["id"], "service_name": "q2c", "service_model": "m", "service_model_ref": "r",
        "status": {"nested": True}}})  # fmt: skip
    assert r.status_code == 200  # free text takes any JSON value as text, never a database error


def test_users_me_is_the_tokens_user(api, psa_sandbox):
    body = api.get("/users/me.json").json()
    (ref,) = body["results"]
    assert ref == {"key": "users", "id": "201"} and body["users"]["201"]["full_name"] == "Priya Raman"
    assert httpx.get(f"{psa_sandbox.url}/api/v1/users/me.json", timeout=10).status_code == 401
