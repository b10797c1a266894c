"""KantataClient over real HTTP against the sandbox, plus the pure mapping functions."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from q2c.domain.customer import Customer
from q2c.domain.engagement import BillingModel, Engagement, RateCardEntry
from q2c.domain.money import Money
from q2c.domain.project import ProjectTemplate, ResourceDemand, Task
from q2c.vendors.http import AUTH_TYPE, NOT_FOUND_TYPE, RATE_LIMITED_TYPE, REJECTED_TYPE, RETRYABLE_TYPE
from q2c.vendors.kantata import mapping as m
from q2c.vendors.kantata.client import KantataClient
from stack.demo_env import DEMO_PSA_TOKEN
from tests.fixtures.psa import psa_settings


def engagement(
    opp: str | None = None, *, roles=(("Senior Consultant", "160"), ("Consultant", "320"), ("Engagement Manager", "40"))
) -> Engagement:
    return Engagement(
        opportunity_id=opp or f"006{uuid.uuid4().hex[:15]}",
        opportunity_name="Acme Data Platform Modernization",
        customer=Customer(crm_account_id="001ACME", name="Acme", legal_name="Acme Corp Ltd"),
        service_line="Data & Analytics",
        billing_model=BillingModel.TIME_AND_MATERIALS,
        contract_value=Money(amount=Decimal("250000.00"), currency="USD"),
        start_date=date(2025, 3, 1),
        end_date=date(2025, 9, 30),
        rate_card=[RateCardEntry(role=r, rate=Decimal("200"), estimated_hours=Decimal(h)) for r, h in roles],
    )


# --- mapping (pure) ---------------------------------------------------------------------


def test_results_follow_result_order_and_skip_included():
    body = {
        "count": 2,
        "results": [{"key": "stories", "id": "2"}, {"key": "stories", "id": "1"}],
        "stories": {"1": {"id": "1"}, "2": {"id": "2"}},
        "workspaces": {"9": {"id": "9"}},
    }
    assert [o["id"] for o in m.results(body)] == ["2", "1"]


def test_workspace_title_and_match():
    e = engagement("006ABC")
    assert m.workspace_title(e) == "Acme Data Platform Modernization [006ABC]"
    assert m.title_matches("Acme Data Platform Modernization [006ABC]", "006ABC")
    assert not m.title_matches("Other [006ABCD]", "006ABC")
    long = e.model_copy(update={"opportunity_name": "x" * 400})
    assert len(m.workspace_title(long)) <= 255 and m.workspace_title(long).endswith("[006ABC]")


def test_cents_use_minor_units():
    assert m.to_cents(Decimal("250000.005"), "USD") == 25000001
    assert m.to_cents(Decimal("1000"), "JPY") == 1000
    assert m.to_cents(Decimal("1.2345"), "KWD") == 1235


def test_workspace_payload():
    e = engagement("006P")
    t = ProjectTemplate(template_id="3001", service_line="Data & Analytics", name="D&A", tasks=[])
    body = m.workspace_payload(e, t, erp_project_id="JOB-77")["workspace"]
    assert body["title"].endswith("[006P]") and body["budget_in_cents"] == 25000000
    assert body["currency"] == "USD" and body["start_date"] == "2025-03-01" and body["due_date"] == "2025-09-30"
    assert body["creator_role"] == "maven" and "JOB-77" in body["description"]


def test_resource_demand_merges_repeated_roles():
    e = engagement(roles=(("Consultant", "100"), ("Senior Consultant", "10"), ("Consultant", "50.5")))
    assert m.resource_demand(e) == [
        ResourceDemand(role="Consultant", hours=Decimal("150.5")),
        ResourceDemand(role="Senior Consultant", hours=Decimal("10")),
    ]
    assert m.hours_json(Decimal("150.5")) == 150.5 and m.hours_json(Decimal("8.00")) == 8


def test_template_from_kantata_orders_stories():
    t = m.template_from_kantata(
        {
            "id": "3",
            "title": "T",
            "custom_field_values": [{"name": "Service Line", "value": "Advisory"}],
            "stories": [{"title": "B", "billable": False, "position": 2}, {"title": "A", "position": 1}],
        }
    )
    assert t == ProjectTemplate(
        template_id="3", service_line="Advisory", name="T", tasks=[Task(name="A"), Task(name="B", billable=False)]
    )


def test_find_role_id_ignores_case_and_spacing():
    roles = {"Senior Consultant": "502"}
    assert m.find_role_id(roles, " senior  consultant") == "502"
    assert m.find_role_id(roles, "Partner") is None


def test_payloads_for_story_request_reference():
    assert m.story_payload("7", Task(name="QA", billable=False)) == {
        "story": {"title": "QA", "workspace_id": "7", "story_type": "task", "billable": False}
    }
    rr = m.resource_request_payload("7", "502", ResourceDemand(role="x", hours=Decimal("12")), engagement())
    assert rr["resource_request"] == {
        "workspace_id": "7",
        "role_id": "502",
        "hours": 12,
        "status": "open",
        "start_date": "2025-03-01",
        "end_date": "2025-09-30",
    }
    ref = m.external_reference_payload("7", "opportunity", "006X")["external_reference"]
    assert ref["service_name"] == "q2c" and ref["subject_type"] == "Workspace" and ref["status"] == "synced"


# --- connector over HTTP ---------------------------------------------------------------------


async def test_templates_and_roles(psa_client: KantataClient):
    templates = await psa_client.list_templates()
    assert {t.service_line for t in templates} == {
        "Data & Analytics",
        "ERP Implementation",
        "Advisory",
        "Cloud Migration",
    }
    da = await psa_client.template_for("data & analytics")
    assert da is not None and da.template_id == "3001"
    assert any(not t.billable for t in da.tasks) and 3 <= len(da.tasks) <= 6
    assert await psa_client.template_for("Cybersecurity") is None
    roles = await psa_client.list_roles()
    assert roles["Engagement Manager"] == "501" and len(roles) == 5


async def test_current_user_for_the_preflight_check(psa_sandbox, psa_client: KantataClient):
    me = await psa_client.current_user()
    assert me["id"] == "201" and me["full_name"] == "Priya Raman" and me["role_id"] == "501"
    async with KantataClient(psa_settings(psa_sandbox.url, token="nope")) as client:
        with pytest.raises(ApplicationError) as err:
            await client.current_user()
        assert err.value.type == AUTH_TYPE and err.value.non_retryable


async def test_wrong_token_is_non_retryable_auth_error(psa_sandbox):
    async with KantataClient(psa_settings(psa_sandbox.url, token="nope")) as client:
        with pytest.raises(ApplicationError) as err:
            await client.list_roles()
        assert err.value.type == AUTH_TYPE and err.value.non_retryable
        assert "oauth" in str(err.value)
        assert client.token_fetches == 2  # fetched once, refreshed once, then given up


async def test_rate_limit_and_outage_are_retryable(psa_sandbox):
    psa_client = KantataClient(psa_settings(psa_sandbox.url), read_retries=0)
    try:
        psa_sandbox.set_faults(rate_429=1.0, retry_after_seconds=3)
        with pytest.raises(ApplicationError) as err:
            await psa_client.list_roles()
        assert err.value.type == RATE_LIMITED_TYPE and not err.value.non_retryable
        assert err.value.next_retry_delay == timedelta(seconds=3)
        psa_sandbox.set_faults(error_rate=1.0)
        with pytest.raises(ApplicationError) as err:
            await psa_client.list_templates()
        assert err.value.type == RETRYABLE_TYPE and not err.value.non_retryable
    finally:
        psa_sandbox.reset_faults()
        await psa_client.aclose()


async def test_validation_is_non_retryable_and_names_field(psa_client):
    with pytest.raises(ApplicationError) as err:
        await psa_client.request(
            "POST",
            "/api/v1/stories.json",
            operation="create_story",
            json={"story": {"title": "x", "workspace_id": "999999"}},
        )
    assert err.value.type == REJECTED_TYPE and err.value.non_retryable
    (details,) = err.value.details
    assert details["status"] == 422
    assert details["errors"][0]["fields"] == ["workspace_id"] and details["errors"][0]["code"] == "validation"
    assert "workspace_id" in str(err.value)


async def test_get_workspace_not_found(psa_client):
    with pytest.raises(ApplicationError) as err:
        await psa_client.get_workspace("999999")
    assert err.value.type == NOT_FOUND_TYPE


def _counts(sandbox, workspace_id: str) -> dict[str, int]:
    return {
        "stories": sum(s["workspace_id"] == workspace_id for s in sandbox.records("stories")),
        "requests": sum(r["workspace_id"] == workspace_id for r in sandbox.records("resource_requests")),
        "references": sum(r["subject_id"] == workspace_id for r in sandbox.records("external_references")),
    }


def _workspaces_for(sandbox, opp: str) -> list[dict]:
    return [w for w in sandbox.records("workspaces") if f"[{opp}]" in w["title"]]


async def test_provision_twice_makes_one_of_each(psa_sandbox):
    e = engagement()
    calls: list[str] = []
    psa_client = KantataClient(psa_settings(psa_sandbox.url), audit=lambda r: calls.append(r.operation))
    try:
        template = await psa_client.template_for("Data & Analytics")
        await psa_client.list_roles()
        calls.clear()
        first = await psa_client.provision_workspace(e, template, erp_project_id="JOB-1001")
        made = list(calls)
        calls.clear()
        second = await psa_client.provision_workspace(e, template, erp_project_id="JOB-1001")
        ws = await psa_client.get_workspace(first.workspace_id)
    finally:
        await psa_client.aclose()
    assert first == second
    # a workspace created by the call is known empty: its parts are created without listing
    # them first; the repeat finds it, lists its parts and creates nothing
    assert not {"list_stories", "list_resource_requests", "list_external_references"} & set(made)
    assert made.count("create_story") == len(template.tasks) and made.count("create_resource_request") == 3
    assert {"list_stories", "list_resource_requests", "list_external_references"} <= set(calls)
    assert not [c for c in calls if c.startswith("create_")]
    assert len(_workspaces_for(psa_sandbox, e.opportunity_id)) == 1
    assert _counts(psa_sandbox, first.workspace_id) == {"stories": len(template.tasks), "requests": 3, "references": 2}
    assert [t.name for t in first.tasks] == [t.name for t in template.tasks]
    assert all(t.psa_story_id for t in first.tasks) and all(d.psa_resource_request_id for d in first.resource_demand)
    assert {d.role: d.hours for d in first.resource_demand}["Consultant"] == Decimal("320")

    assert ws["title"] == m.workspace_title(e) and ws["budget_in_cents"] == 25000000
    refs = {r["service_model"]: r["service_model_ref"] for r in ws["external_references"]}
    assert refs == {"opportunity": e.opportunity_id, "erp_project": "JOB-1001"}
    assert {s["title"]: s["billable"] for s in ws["stories"]}["Internal QA"] is False
    assert len(ws["resource_requests"]) == 3


async def test_crash_after_create_adopts_workspace(psa_sandbox, psa_client):
    """An attempt created the workspace (exact title) and died before anything else."""
    e = engagement()
    made = httpx.post(
        f"{psa_sandbox.url}/api/v1/workspaces.json",
        headers={"Authorization": f"Bearer {DEMO_PSA_TOKEN}"},
        json={"workspace": {"title": m.workspace_title(e)}},
    ).json()
    made_id = made["results"][0]["id"]
    template = await psa_client.template_for("Advisory")
    result = await psa_client.provision_workspace(e, template, erp_project_id="JOB-2")
    assert result.workspace_id == made_id
    assert len(_workspaces_for(psa_sandbox, e.opportunity_id)) == 1
    assert _counts(psa_sandbox, made_id) == {"stories": len(template.tasks), "requests": 3, "references": 2}


async def test_crash_midway_converges(psa_sandbox, psa_client):
    """Workspace, its opportunity reference and one story exist: the rest is filled in."""
    e = engagement()
    template = await psa_client.template_for("Cloud Migration")
    headers = {"Authorization": f"Bearer {DEMO_PSA_TOKEN}"}
    api = f"{psa_sandbox.url}/api/v1"
    made = httpx.post(
        f"{api}/workspaces.json", headers=headers, json=m.workspace_payload(e, template, erp_project_id="JOB-3")
    ).json()
    wid = made["results"][0]["id"]
    httpx.post(
        f"{api}/external_references.json",
        headers=headers,
        json=m.external_reference_payload(wid, "opportunity", e.opportunity_id),
    ).raise_for_status()
    httpx.post(f"{api}/stories.json", headers=headers, json=m.story_payload(wid, template.tasks[0])).raise_for_status()
    httpx.post(
        f"{api}/resource_requests.json",
        headers=headers,
        json=m.resource_request_payload(wid, "502", ResourceDemand(role="Senior Consultant", hours=Decimal("160")), e),
    ).raise_for_status()
    result = await psa_client.provision_workspace(e, template, erp_project_id="JOB-3")
    assert result.workspace_id == wid
    assert _counts(psa_sandbox, wid) == {"stories": len(template.tasks), "requests": 3, "references": 2}
    # and a new ERP project id re-points the one reference instead of adding another
    await psa_client.provision_workspace(e, template, erp_project_id="JOB-3B")
    refs = [r for r in psa_sandbox.records("external_references") if r["subject_id"] == wid]
    assert sorted(r["service_model_ref"] for r in refs) == sorted([e.opportunity_id, "JOB-3B"])


async def test_unknown_role_fails_before_writing(psa_sandbox, psa_client):
    e = engagement(roles=(("Partner", "10"),))
    template = await psa_client.template_for("Advisory")
    with pytest.raises(ApplicationError) as err:
        await psa_client.provision_workspace(e, template, erp_project_id="JOB-4")
    assert err.value.non_retryable and "Partner" in str(err.value)
    assert _workspaces_for(psa_sandbox, e.opportunity_id) == []


def test_time_entry_role_is_the_booked_one_never_the_users_current_role():
    users = {"203": {"id": "203", "full_name": "Sofia Lindqvist", "role_id": "502"}}  # promoted since
    names = {"502": "Senior Consultant", "503": "Consultant", "504": "Solution Architect"}

    def read(role_id, resources):
        obj = {
            "id": "9",
            "user_id": "203",
            "role_id": role_id,
            "workspace_id": "7002",
            "story_id": "1",
            "date_performed": "2027-01-12",
            "time_in_minutes": 60,
            "billable": True,
            "approved": True,
        }
        return m.time_entry_from_kantata(obj, users, names, m.project_roles(resources))

    booked = read("503", [])
    assert (booked.role, booked.role_issue) == ("Consultant", None)
    staffed = read(None, [{"user_id": "203", "role_id": "503"}, {"user_id": None, "role_id": "504"}])
    assert (staffed.role, staffed.role_issue) == ("Consultant", None)
    unknown = read(None, [])
    assert unknown.role == "" and unknown.role_issue == (
        "the PSA entry carries no role and user 203 holds no role on workspace 7002"
    )
    several = read(None, [{"user_id": "203", "role_id": "503"}, {"user_id": "203", "role_id": "504"}])
    assert several.role == "" and "holds several roles on workspace 7002 (role ids 503, 504)" in several.role_issue
    assert read("999", []).role_issue == "role 999 of the PSA entry is not a known Kantata role"
