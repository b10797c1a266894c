"""Approved time for the benchmark, loaded through the PSA sandbox (`POST /__sandbox/time/bulk`).

Per workspace: M billable entries on the workspace's billable stories, by consultants holding
the roles of the rate card (users 201 Engagement Manager, 202/207 Senior Consultant,
203/206 Consultant of the PSA seed), dated on the days of the month up to the close date,
60-480 minutes in 15-minute steps (seeded, so a run is repeatable). Each user's week is
submitted and approved by the sandbox, so every entry leaves the PSA as approved time.

The loader keeps what it loaded, so the checks can compute the invoice independently of
q2c and of the ERP.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import date, timedelta

import httpx

# user id -> role name (PSA seed: sandbox/psa/seed.py)
USERS = {
    "201": "Engagement Manager",
    "202": "Senior Consultant",
    "207": "Senior Consultant",
    "203": "Consultant",
    "206": "Consultant",
}


@dataclass(frozen=True)
class LoadedEntry:
    psa_id: str
    role: str
    minutes: int
    date_performed: date


def plan_entries(
    workspace_id: str, story_ids: list[str], count: int, *, first: date, last: date, seed: int
) -> tuple[list[dict], list[tuple[str, int, date]]]:
    """The bulk payload rows and (role, minutes, date) of each, in the same order."""
    rng = random.Random(seed)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    users = list(USERS)
    rows, plan = [], []
    for i in range(count):
        user = users[i % len(users)]
        day = days[i % len(days)]
        minutes = rng.randrange(60, 481, 15)
        rows.append(
            {
                "workspace_id": workspace_id,
                "story_id": story_ids[i % len(story_ids)],
                "user_id": user,
                "date_performed": day.isoformat(),
                "time_in_minutes": minutes,
                "billable": True,
                "notes": f"Month-end benchmark entry {i + 1}",
            }
        )
        plan.append((USERS[user], minutes, day))
    return rows, plan


async def load_workspace(
    psa: httpx.AsyncClient, workspace_id: str, story_ids: list[str], count: int, *, first: date, last: date, seed: int
) -> list[LoadedEntry]:
    rows, plan = plan_entries(workspace_id, story_ids, count, first=first, last=last, seed=seed)
    r = await psa.post("/__sandbox/time/bulk", json={"time_entries": rows, "approved": True})
    if r.status_code >= 300:
        raise RuntimeError(f"PSA bulk load for workspace {workspace_id} failed: {r.status_code} {r.text[:500]}")
    ids = r.json()["time_entry_ids"]
    return [LoadedEntry(psa_id=str(i), role=role, minutes=m, date_performed=d) for i, (role, m, d) in zip(ids, plan)]


async def load_all(
    psa_url: str,
    workspaces: dict[str, tuple[str, list[str]]],
    count: int,
    *,
    first: date,
    last: date,
    concurrency: int = 4,
) -> dict[str, list[LoadedEntry]]:
    """workspaces: opportunity id -> (workspace id, billable story ids). Answers entries per opportunity."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=psa_url, timeout=120) as psa:

        async def one(seed: int, opp: str, ws: str, stories: list[str]) -> tuple[str, list[LoadedEntry]]:
            async with gate:
                return opp, await load_workspace(psa, ws, stories, count, first=first, last=last, seed=seed)

        done = await asyncio.gather(*(one(i, opp, ws, st) for i, (opp, (ws, st)) in enumerate(workspaces.items())))
    return dict(done)
