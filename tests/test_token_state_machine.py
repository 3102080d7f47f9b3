"""Property test of the control-string state machine, against the real store.

Invariants: at most one active control string per account; each control string redeemed at most
once; none valid after a password, email, login or block change; only the newest one works.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from b24recover.clock import FixedClock
from b24recover.config import Settings
from b24recover.errors import B24Error
from b24recover.services import accounts
from b24recover.services.context import Ctx
from b24recover.services.credentials import prepare_password, store_password
from b24recover.services.recovery import redeem
from b24recover.services.setup import init_all
from b24recover.services.tokens import check, issue, request, revoke
from b24recover.store.db import open_store

LOGINS = ("anna", "boris")
_passwords = (f"state machine passphrase {n}" for n in itertools.count())


class TokenMachine(RuleBasedStateMachine):
    def __init__(self, pg_server=None):
        """A store of its own per example: a SQLite file, or a fresh schema on `pg_server`."""
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="b24sm-"))
        self.pg_server, self.schema, db = pg_server, None, self.dir / "s.db"
        if pg_server is not None:
            from b24recover.store.url import StoreURL

            self.schema = pg_server.new_schema()
            os.environ["PGOPTIONS"] = f"-c search_path={self.schema},public"  # the test restores it
            db = StoreURL(pg_server.url)
        cfg = Settings(db_path=db, bcrypt_rounds=4, config_file=self.dir / "b24recover.toml")
        self.clock = FixedClock()
        boot = Ctx(store=None, settings=cfg, clock=self.clock, actor="test")
        init_all(boot)
        self.ctx = Ctx(store=open_store(cfg.db_path), settings=cfg, clock=self.clock, actor="test")
        self.secrets: dict[str, list[dict]] = {login: [] for login in LOGINS}
        self.redeemed: dict[int, int] = {}
        for n, login in enumerate(LOGINS):
            acc = accounts.prepare(self.ctx, login, f"{login}@example.com", None, login.title(), "", None)
            accounts.add_user(self.ctx, acc, prepare_password(self.ctx, next(_passwords)))

    def teardown(self):
        self.ctx.store.close()
        if self.schema:
            self.pg_server.drop_schema(self.schema)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _invalidate(self, login):
        for s in self.secrets[login]:
            s["valid"] = False

    @rule(login=st.sampled_from(LOGINS))
    def issue_link(self, login):
        try:
            issued = issue(self.ctx, login, "none", force=True)
        except B24Error as exc:
            assert exc.code == "blocked"
            return
        self._invalidate(login)  # the newest supersedes every earlier one
        secret = issued.link.split("USER_CHECKWORD=")[1].split("&")[0]
        self.secrets[login].append({"id": issued.view["id"], "secret": secret, "valid": True,
                                    "expires": self.clock.now() + self.ctx.settings.tokens.link_ttl})

    @rule(login=st.sampled_from(LOGINS))
    def portal_request(self, login):
        before = self._active_ids(login)
        request(self.ctx, f"{login}@example.com")
        if self._active_ids(login) != before:
            self._invalidate(login)  # a request (if not throttled/blocked) supersedes; its secret went by mail

    @rule(login=st.sampled_from(LOGINS), pick=st.integers(min_value=0, max_value=50), newest=st.booleans())
    def try_redeem(self, login, pick, newest):
        pool = self.secrets[login]
        if not pool:
            return
        entry = pool[-1] if newest else pool[pick % len(pool)]
        try:
            redeem(self.ctx, login, entry["secret"], next(_passwords))
        except B24Error as exc:
            assert exc.code.startswith("control_string_") or exc.code == "too_many_attempts", exc.code
            assert not (entry["valid"] and self.clock.now() <= entry["expires"]), exc.code
            return
        assert entry["valid"] and self.clock.now() <= entry["expires"]
        self.redeemed[entry["id"]] = self.redeemed.get(entry["id"], 0) + 1
        self._invalidate(login)

    @rule(login=st.sampled_from(LOGINS))
    def operator_revoke(self, login):
        revoke(self.ctx, login, "test")
        self._invalidate(login)

    @rule(login=st.sampled_from(LOGINS))
    def password_change(self, login):
        new = prepare_password(self.ctx, next(_passwords))
        with self.ctx.store.write() as conn:
            user = accounts.get_user(conn, login)
            store_password(self.ctx, conn, user["id"], new)
        self._invalidate(login)

    @rule(login=st.sampled_from(LOGINS), n=st.integers(min_value=0, max_value=3))
    def email_change(self, login, n):
        before = self.ctx.store.scalar("SELECT email FROM users WHERE login = ?", (login,))
        accounts.update_user(self.ctx, login, email=f"{login}{n}@example.com")
        if before != f"{login}{n}@example.com":
            self._invalidate(login)

    @rule(login=st.sampled_from(LOGINS))
    def block_and_unblock(self, login):
        accounts.set_blocked(self.ctx, login, True)
        self._invalidate(login)
        accounts.set_blocked(self.ctx, login, False)

    @rule(seconds=st.sampled_from([1, 59, 61, 3600, 86400, 86401]))
    def advance_clock(self, seconds):
        self.clock.advance(seconds)

    def _active_ids(self, login):
        return [r[0] for r in self.ctx.store.all(
            "SELECT c.id FROM control_strings c JOIN users u ON u.id = c.user_id WHERE u.login = ? AND c.state = 'active'",
            (login,))]

    @invariant()
    def at_most_one_active(self):
        for login in LOGINS:
            assert len(self._active_ids(login)) <= 1

    @invariant()
    def redeemed_at_most_once(self):
        assert all(count == 1 for count in self.redeemed.values())

    @invariant()
    def model_agrees_with_check(self):
        for login in LOGINS:
            for entry in self.secrets[login]:
                expected = entry["valid"] and self.clock.now() <= entry["expires"]
                try:
                    check(self.ctx, login, entry["secret"])
                    actual = True
                except B24Error:
                    actual = False
                assert actual == expected, (login, entry)


TestTokenMachine = TokenMachine.TestCase
TestTokenMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

# Fewer examples on PostgreSQL: every step is a few round trips to the server, and the rules are
# the engine-neutral store's; the SQLite run explores more.
PG_EXAMPLES = 10


def test_token_machine_on_postgresql(pg_server, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "")  # each example points it at its own schema
    run_state_machine_as_test(lambda: TokenMachine(pg_server),
                              settings=settings(max_examples=PG_EXAMPLES, stateful_step_count=25, deadline=None))
