"""Demo data of the Kantata sandbox, written once when the database is empty.

Fixed ids so that demos and tests can name them:
- roles 501-505: Engagement Manager, Senior Consultant, Consultant, Solution Architect,
  Project Manager;
- users 201-207 (consultants of the demo firm); the API token belongs to 201;
- workspace templates 3001-3004 for the service lines Data & Analytics, ERP Implementation,
  Advisory, Cloud Migration (deliberately none for Cybersecurity, so that an engagement of
  that line waits for a steward);
- workspace 7001, an internal practice workspace with two stories (new workspaces get 7002+)
  and two approved internal expenses 60001-60002 (one in EUR; new expenses get 60003+).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, delete, select

from sandboxes.psa.models import (
    Expense,
    ExternalReference,
    PsaTable,
    ResourceRequest,
    Role,
    Story,
    TemplateStory,
    TimeEntry,
    TimesheetSubmission,
    User,
    Workspace,
    WorkspaceResource,
    WorkspaceTemplate,
)

ROLES: dict[int, str] = {
    501: "Engagement Manager",
    502: "Senior Consultant",
    503: "Consultant",
    504: "Solution Architect",
    505: "Project Manager",
}

USERS: list[tuple[int, str, str, str, int]] = [
    (201, "Priya Raman", "priya.raman@northpeak-consulting.example", "Engagement Manager", 501),
    (202, "Marcus Oyelaran", "marcus.oyelaran@northpeak-consulting.example", "Senior Consultant", 502),
    (203, "Sofia Lindqvist", "sofia.lindqvist@northpeak-consulting.example", "Consultant", 503),
    (204, "Daniel Okafor", "daniel.okafor@northpeak-consulting.example", "Solution Architect", 504),
    (205, "Hannah Becker", "hannah.becker@northpeak-consulting.example", "Project Manager", 505),
    (206, "Kenji Watanabe", "kenji.watanabe@northpeak-consulting.example", "Consultant", 503),
    (207, "Laura Moreno", "laura.moreno@northpeak-consulting.example", "Senior Consultant", 502),
]

# template id -> (title, service line, [(story title, billable)])
TEMPLATES: dict[int, tuple[str, str, list[tuple[str, bool]]]] = {
    3001: (
        "Data & Analytics Delivery",
        "Data & Analytics",
        [
            ("Discovery & Requirements Workshops", True),
            ("Data Platform Architecture", True),
            ("Pipeline Build & Data Migration", True),
            ("Dashboards & Reporting", True),
            ("User Acceptance Testing", True),
            ("Internal QA", False),
        ],
    ),
    3002: (
        "ERP Implementation Methodology",
        "ERP Implementation",
        [
            ("Project Kickoff & Planning", True),
            ("Fit-Gap Analysis", True),
            ("Configuration & Build", True),
            ("Data Conversion", True),
            ("UAT & Go-Live", True),
            ("Internal QA", False),
        ],
    ),
    3003: (
        "Advisory Engagement",
        "Advisory",
        [
            ("Stakeholder Interviews", True),
            ("Current-State Assessment", True),
            ("Recommendations Report", True),
            ("Engagement Management (internal)", False),
        ],
    ),
    3004: (
        "Cloud Migration Factory",
        "Cloud Migration",
        [
            ("Cloud Readiness Assessment", True),
            ("Landing Zone Setup", True),
            ("Workload Migration Waves", True),
            ("Cutover & Validation", True),
            ("Internal QA", False),
        ],
    ),
}

DEMO_WORKSPACE_ID = 7001
# Approved, non-billable expenses on the internal workspace (one in EUR on a USD workspace);
# the demo's billable ones are booked per T&M engagement by the simulator
# (`POST /__sandbox/expenses/generate`, see expense_routes).
DEMO_EXPENSES: list[tuple[int, int, str, str, str, int, str]] = [
    (60001, 203, "2026-11-10", "Training", "AWS Training", 45000, "USD"),
    (60002, 204, "2026-11-18", "Conference", "Data Summit Berlin", 69000, "EUR"),
]
TOKEN_USER_ID = 201  # the sandbox's one API token belongs to Priya Raman (GET /users/me.json)


def seed(engine: Engine) -> bool:
    """Write the demo data unless it is already there; True when something was written."""
    with Session(engine) as session:
        if session.exec(select(Role).limit(1)).first() is not None:
            return False
        for role_id, name in ROLES.items():
            session.add(Role(id=role_id, name=name))
        for uid, name, email, headline, role_id in USERS:
            session.add(User(id=uid, full_name=name, email_address=email, headline=headline, role_id=role_id))
        for tid, (title, line, stories) in TEMPLATES.items():
            session.add(
                WorkspaceTemplate(id=tid, title=title, service_line=line, description=f"Standard {line} delivery plan")
            )
            for pos, (story_title, billable) in enumerate(stories, start=1):
                session.add(TemplateStory(template_id=tid, title=story_title, billable=billable, position=pos))
        session.add(
            Workspace(
                id=DEMO_WORKSPACE_ID,
                title="Practice Enablement (internal)",
                description="Internal workspace for training and pre-sales",
                start_date="2025-01-06",
                currency="USD",
                status="Active",
            )
        )
        session.add(Story(workspace_id=DEMO_WORKSPACE_ID, title="Certification Training", billable=False, position=1))
        session.add(Story(workspace_id=DEMO_WORKSPACE_ID, title="Pre-sales Support", billable=False, position=2))
        for eid, uid, day, category, vendor, cents, currency in DEMO_EXPENSES:
            session.add(
                Expense(
                    id=eid,
                    workspace_id=DEMO_WORKSPACE_ID,
                    user_id=uid,
                    date=day,
                    category=category,
                    vendor=vendor,
                    notes=f"{category} (internal)",
                    amount_in_cents=cents,
                    currency=currency,
                    is_billable=False,
                    approved=True,
                    receipt_id=800000 + eid,
                )
            )
        session.commit()
    return True


def reset(engine: Engine) -> None:
    """Back to the seed: drop every row of every PSA table, then seed again."""
    with Session(engine) as session:
        for table in (
            Expense,
            TimeEntry,
            TimesheetSubmission,
            ExternalReference,
            ResourceRequest,
            WorkspaceResource,
            Story,
            Workspace,
            TemplateStory,
            WorkspaceTemplate,
            User,
            Role,
        ):
            session.exec(delete(table))
        session.commit()
    seed(engine)


def create_tables(engine: Engine) -> None:
    PsaTable.metadata.create_all(engine)
