"""Console sessions: the cookie is an opaque server-side session that logout really ends."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from q2c.console.auth import SESSION_COOKIE, Authenticator, TokenConfigError, parse_tokens, token_digest
from q2c.ledger.config import make_ledger_engine
from q2c.ledger.sessions import SessionStore, session_hash
from tests.fixtures.console import STEWARD_TOKEN, VIEWER_TOKEN


async def test_login_sets_an_opaque_cookie_and_logout_revokes_it(console_stack):
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=30) as browser:
        r = await browser.post("/console/login", data={"token": STEWARD_TOKEN})
        assert r.status_code == 303
        set_cookie = r.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and "Max-Age=28800" in set_cookie
        cookie = browser.cookies[SESSION_COOKIE]
        assert STEWARD_TOKEN not in cookie and len(cookie) >= 40  # 256 random bits, not the token
        assert (await browser.get("/console")).status_code == 200

        # the ledger holds the session's hash, never the cookie itself
        with console_stack.ledger.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id_hash, user, role FROM q2c_console_session").fetchall()
        assert (session_hash(cookie), "steward", "steward") in [tuple(r) for r in rows]
        assert all(cookie not in str(tuple(r)) for r in rows)

        assert (await browser.post("/console/logout")).status_code == 303

    # the old cookie, replayed by someone who copied it, no longer works
    async with httpx.AsyncClient(base_url=console_stack.url, timeout=30, cookies={SESSION_COOKIE: cookie}) as thief:
        page = await thief.get("/console", follow_redirects=False)
        assert page.status_code in (303, 307) and "/console/login" in page.headers["location"]
        api = await thief.get("/api/queue")
        assert api.status_code == 401


async def test_a_made_up_or_token_valued_cookie_is_refused(console_stack):
    for value in ("not-a-session", STEWARD_TOKEN, VIEWER_TOKEN, "x" * 5000):
        async with httpx.AsyncClient(base_url=console_stack.url, timeout=30, cookies={SESSION_COOKIE: value}) as h:
            assert (await h.get("/api/queue")).status_code == 401, value[:20]


def test_sessions_expire_and_end_with_their_token(tmp_path):
    store = SessionStore(make_ledger_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
    auth = Authenticator(parse_tokens("alice:steward:t1"), sessions=store)
    alice = auth.lookup("t1")
    session_id = auth.start_session(alice)
    assert store.find(session_id).user == "alice"

    # an expired session is refused
    expired, _ = store.open("alice", "steward", token_digest("t1"), timedelta(seconds=-1))
    assert store.find(expired) is None

    # removing alice's token from the configuration ends her sessions at the next request
    without_alice = Authenticator(parse_tokens("bob:viewer:t2"), sessions=store)

    class _Request:  # the two attributes Authenticator.principal reads
        headers: dict = {}
        cookies = {SESSION_COOKIE: session_id}

    assert auth.principal(_Request()).user == "alice"
    assert without_alice.principal(_Request()) is None

    assert store.revoke_user("alice") == 1
    assert store.find(session_id) is None


def test_no_tokens_configured_fails_closed(monkeypatch, tmp_path):
    monkeypatch.delenv("Q2C_API_TOKENS", raising=False)
    monkeypatch.setenv("Q2C_STATE_DIR", str(tmp_path))
    with pytest.raises(TokenConfigError, match="Q2C_API_TOKENS is not set"):
        Authenticator.from_env()
