"""`audit tokens` (stale counts, --check, --purge) and `audit log` (filters, the hash chain)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24recover.config import load_settings
from b24recover.services import audit as svc
from b24recover.services.context import Ctx
from b24recover.store.db import open_store
from conftest import add_user, connect_db
from tamper import tamper
from tokenhelp import link_parts

DAY = 86400
RETENTION = 30 * DAY
NEW_PASSWORD = "a brand new passphrase 42"
STATES = ("superseded", "used", "revoked", "expired")


def issue(cli, login, *extra):
    r = cli("token", "issue", login, "--via", "none", "--force", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return r.json


def redeem(cli, login, issued, password=NEW_PASSWORD):
    secret = link_parts(issued["link"])[1]
    return cli("redeem", login, "--control-string-stdin", "--password-stdin", "--json",
               input=f"{secret}\n{password}\n")


def stale(cli, *extra):
    r = cli("audit", "tokens", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return r.json


def rows(db_path, sql, params=()):
    conn = connect_db(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def one_of_each(store, clock):
    """anna: superseded + used; boris: revoked; carl: expired. All end at the same instant T,
    except carl's, which expires at T + 1 s."""
    for login in ("anna", "boris", "carl", "dora"):
        add_user(store, login, "--email", f"{login}@example.com")
    issue(store, "anna")
    newest = issue(store, "anna")                       # the first one is superseded now
    assert redeem(store, "anna", newest).exit_code == 0   # used
    issue(store, "boris")
    assert store("token", "revoke", "boris").exit_code == 0
    issue(store, "carl", "--ttl", "1s")


@pytest.fixture
def ctx(store, db_path, config_path, clock):
    """The service layer on the same (initialised) store and clock as the `store` fixture."""
    opened = open_store(db_path)
    yield Ctx(store=opened, settings=load_settings(str(config_path), str(db_path)), clock=clock, actor="tester")
    opened.close()


# ---- audit tokens -----------------------------------------------------------------------------

def test_counts_by_state_only_after_the_retention(store, clock):
    one_of_each(store, clock)
    fresh = stale(store)
    assert fresh["stale"] == dict.fromkeys(STATES, 0) and fresh["purged"] == 0
    clock.advance(RETENTION - 1)
    assert stale(store)["stale"] == dict.fromkeys(STATES, 0)
    clock.advance(1)
    # ended exactly 30 d ago counts as older than the retention (issue 13 item 17: "older than
    # 0s" is everything that has ended); the expired one was valid through its last second
    assert stale(store)["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 0}
    clock.advance(1)
    assert stale(store)["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 0}
    clock.advance(1)
    report = stale(store)
    assert report["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 1}
    assert report["older_than"] == "30d" and report["cutoff"].endswith("Z")


def test_older_than_overrides_the_retention(store, clock):
    one_of_each(store, clock)
    clock.advance(2 * 3600)
    assert stale(store, "--older-than", "1h")["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 1}
    assert stale(store, "--older-than", "3h")["stale"] == dict.fromkeys(STATES, 0)
    bad = store("audit", "tokens", "--older-than", "soon", "--json")
    assert bad.exit_code == 2 and bad.error["code"] == "usage"


def test_retention_comes_from_the_config(store, clock, config_path):
    one_of_each(store, clock)
    config_path.write_text(config_path.read_text() + '[tokens]\nretention = "7d"\n')
    clock.advance(7 * DAY + 2)
    assert sum(stale(store)["stale"].values()) == 4
    assert stale(store)["older_than"] == "7d"


def test_check_exits_10_with_the_counts_on_stdout(store, clock):
    one_of_each(store, clock)
    quiet = store("audit", "tokens", "--check")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    clock.advance(RETENTION + 2)
    found = store("audit", "tokens", "--check", "--json")
    assert found.exit_code == 10
    assert found.json["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 1}
    assert found.error["code"] == "check_found" and "4 stale" in found.error["message"]
    plain = store("audit", "tokens", "--check")
    assert plain.exit_code == 10 and plain.stdout == ""
    assert "4 stale control string(s)" in plain.stderr and "--purge" in plain.stderr


def test_purge_deletes_stale_keeps_active_and_is_idempotent(store, clock, db_path):
    one_of_each(store, clock)
    clock.advance(RETENTION + 2)
    active_id = issue(store, "dora")["id"]
    r = store("audit", "tokens", "--purge", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json["purged"] == 4 and r.json["stale"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 1}
    assert r.json["purged_by_state"] == r.json["stale"]
    assert rows(db_path, "SELECT id, state FROM control_strings") == [(active_id, "active")]
    again = store("audit", "tokens", "--purge", "--json")
    assert again.exit_code == 0 and again.json["purged"] == 0
    assert store("audit", "tokens", "--check").exit_code == 0
    events = store("audit", "log", "--action", "audit.purge", "--json").json["events"]
    assert [e["details"]["purged"] for e in events] == [4, 0]
    assert events[0]["details"]["by_state"] == {"superseded": 1, "used": 1, "revoked": 1, "expired": 1}
    starts = store("audit", "log", "--action", "audit.purge.start", "--json").json["events"]
    assert len(starts) == 1 and starts[0]["details"]["stale"]["used"] == 1  # no start when nothing was stale
    # dora can still use hers
    assert store("token", "list", "dora", "--state", "active", "--json").json["control_strings"][0]["id"] == active_id


def test_purge_is_quiet_when_not_on_a_terminal(store, clock):
    one_of_each(store, clock)
    clock.advance(RETENTION + 2)
    r = store("audit", "tokens", "--purge")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    loud = store("audit", "tokens", "--purge", "--verbose")
    assert loud.exit_code == 0 and "Purged 0 control string(s)" in loud.stdout
    report = store("audit", "tokens")  # a plain report is data: printed even when piped
    assert "superseded" in report.stdout and "total" in report.stdout


def test_purge_with_a_progress_bar_on_a_terminal(store, clock, monkeypatch):
    from b24recover.cli import render

    one_of_each(store, clock)
    clock.advance(RETENTION + 2)
    monkeypatch.setattr(render, "is_tty", lambda stream=None: True)
    r = store("audit", "tokens", "--purge", "--batch-size", "1")
    assert r.exit_code == 0, r.stderr
    assert "Purged 4 control string(s)" in r.stdout and "4 batch(es)" in r.stdout


def test_dry_run_deletes_nothing_and_records_nothing(store, clock, db_path):
    one_of_each(store, clock)
    clock.advance(RETENTION + 2)
    before = rows(db_path, "SELECT count(*) FROM control_strings")[0][0]
    r = store("audit", "tokens", "--purge", "--dry-run", "--json")
    assert r.exit_code == 0 and r.json["dry_run"] is True and r.json["purged"] == 0
    assert sum(r.json["stale"].values()) == 4
    assert rows(db_path, "SELECT count(*) FROM control_strings")[0][0] == before
    assert store("audit", "log", "--action", "audit.purge", "--json").json["events"] == []


def test_flag_combinations(store):
    assert store("audit", "tokens", "--dry-run", "--json").error["code"] == "usage"
    combined = store("audit", "tokens", "--check", "--purge", "--json")
    assert combined.exit_code == 2 and combined.error["code"] == "usage"
    assert store("audit", "tokens", "--purge", "--batch-size", "0").exit_code == 2


def test_never_touches_a_control_string_an_undelivered_message_carries(store, clock, db_path, engine):
    add_user(store, "anna", "--email", "anna@example.com")
    issue(store, "anna")
    clock.advance(61)
    issue(store, "anna")  # the first is superseded
    first, second = (r[0] for r in rows(db_path, "SELECT id FROM control_strings ORDER BY id"))
    conn = connect_db(db_path)
    with conn:  # a message about the superseded one, still waiting (e.g. a retry of a failed send)
        conn.execute("INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient, status,"
                     " created_at) SELECT id, ?, 'email', 'recovery_link', 'en', email, 'failed', 0 FROM users",
                     (first,))
    conn.close()
    clock.advance(RETENTION + 1)
    report = stale(store)
    assert report["stale"]["superseded"] == 0 and report["held"] == 1
    assert store("audit", "tokens", "--purge", "--json").json["purged"] == 0
    assert [r[0] for r in rows(db_path, "SELECT id FROM control_strings ORDER BY id")] == [first, second]
    # once delivered the message no longer needs it: the row goes, the message stays
    conn = connect_db(db_path)
    with conn:
        conn.execute("UPDATE outbox SET status = 'sent', sent_at = 1")
    conn.close()
    assert store("audit", "tokens", "--purge", "--json").json["purged"] == 1
    assert [r[0] for r in rows(db_path, "SELECT id FROM control_strings")] == [second]
    assert rows(db_path, "SELECT status, control_string_id FROM outbox") == [("sent", None)]
    if engine == "sqlite":  # PostgreSQL checks every reference as it is written
        assert rows(db_path, "PRAGMA foreign_key_check") == []


def test_purge_restores_the_connection_settings(store, clock, ctx):
    one_of_each(store, clock)
    clock.advance(RETENTION + 2)
    conn = ctx.store.conn
    before = [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "foreign_keys", "cache_size")]
    assert svc.purge_tokens(ctx, batch=1)["purged"] == 4
    after = [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "foreign_keys", "cache_size")]
    assert after == before and after[0] == 2 and after[1] == 1  # FULL, foreign keys on


def test_an_interrupted_purge_is_recorded_and_the_next_run_finishes(store, clock, ctx, db_path):
    one_of_each(store, clock)
    clock.advance(RETENTION + 2)

    def stop_after_first_batch(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        svc.purge_tokens(ctx, batch=1, progress=stop_after_first_batch)
    assert rows(db_path, "SELECT count(*) FROM control_strings")[0][0] == 3  # 4 minus the committed batch
    last = store("audit", "log", "--action", "audit.purge", "--json").json["events"][-1]
    assert last["details"]["interrupted"] == "interrupted" and last["details"]["purged"] == 1
    assert svc.purge_tokens(ctx)["purged"] == 3
    assert svc.stale_tokens(ctx)["total"] == 0


def test_pacer_yields_after_its_window_and_once_more_while_others_write():
    now = [0.0]
    slept, chores = [], []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    def checkpoint():
        chores.append(now[0])
        now[0] += 0.05  # the checkpoint takes part of the pause

    pacer = svc.Pacer(window=0.3, pause=0.12, max_pauses=2, sleep=sleep, clock=lambda: now[0])
    pacer.after_batch(lambda: False, checkpoint)     # starts the window
    now[0] += 0.1
    pacer.after_batch(lambda: False, checkpoint)
    assert slept == [] and chores == []              # inside the window: no pause
    now[0] += 0.25
    pacer.after_batch(lambda: False, checkpoint)
    assert chores == [0.35] and slept == [0.07]      # window over: checkpoint, then the rest of the pause
    now[0] += 0.31
    pacer.after_batch(lambda: True, checkpoint)
    assert len(chores) == 2 and slept[1:] == [0.07, 0.12]  # someone got in: one more pause, then back to work
    assert pacer.yielded == pytest.approx(0.12 * 3)


def test_pacer_sizes_batches_by_time():
    pacer = svc.Pacer(batch=2000, target=0.2, min_batch=200, max_batch=20000)
    pacer.took(0.05)
    assert pacer.batch == 4000
    for _ in range(5):
        pacer.took(0.01)
    assert pacer.batch == 20000
    pacer.took(0.15)                                  # between half the target and the target: keep
    assert pacer.batch == 20000
    pacer.took(0.5)
    assert pacer.batch == 10000
    fixed = svc.Pacer(batch=500, adaptive=False)
    fixed.took(0.001)
    fixed.took(9)
    assert fixed.batch == 500


# ---- audit log --------------------------------------------------------------------------------

def test_log_shows_every_state_change_with_the_contract_fields(store, clock):
    add_user(store, "anna", "--email", "anna@example.com")
    assert store("token", "request", "anna@example.com").exit_code == 0
    clock.advance(61)
    issued = issue(store, "anna")
    assert redeem(store, "anna", {"link": issued["link"].replace("USER_CHECKWORD=", "USER_CHECKWORD=0")}
                  ).exit_code == 6                                                # wrong control string
    assert redeem(store, "anna", issued).exit_code == 0
    assert redeem(store, "anna", issued, "another good passphrase 7").exit_code == 6  # used
    assert store("token", "revoke", "anna").exit_code == 0
    assert store("user", "block", "anna").exit_code == 0
    r = store("audit", "log", "--login", "ANNA", "--json")
    assert r.exit_code == 0
    events = r.json["events"]
    assert all(set(e) >= {"id", "at", "actor", "action", "login", "details"} for e in events)
    actions = [e["action"] for e in events]
    assert actions == ["user.add", "token.request", "token.issue", "redeem.failed", "redeem", "redeem.failed",
                       "token.revoke", "user.block"]
    failures = [e["details"]["code"] for e in events if e["action"] == "redeem.failed"]
    assert failures == ["control_string_incorrect", "control_string_used"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    secret = link_parts(issued["link"])[1]
    assert secret not in r.stdout and NEW_PASSWORD not in r.stdout


def test_log_filters_action_since_and_limit(store, clock):
    add_user(store, "anna")
    clock.advance(3 * 3600)
    add_user(store, "boris")
    issue(store, "boris")
    all_events = store("audit", "log", "--json").json["events"]
    assert [e["action"] for e in all_events] == ["store.init", "user.add", "user.add", "token.issue"]
    recent = store("audit", "log", "--since", "2h", "--json").json["events"]
    assert [(e["action"], e["login"]) for e in recent] == [("user.add", "boris"), ("token.issue", "boris")]
    date = all_events[-1]["at"][:10]
    assert len(store("audit", "log", "--since", date, "--json").json["events"]) >= 2
    assert store("audit", "log", "--since", "2999-01-01", "--json").json["events"] == []
    adds = store("audit", "log", "--action", "user.add", "--json").json["events"]
    assert [e["login"] for e in adds] == ["anna", "boris"]
    newest = store("audit", "log", "--limit", "2", "--json").json["events"]
    assert [e["action"] for e in newest] == ["user.add", "token.issue"]
    assert len(store("audit", "log", "--limit", "0", "--json").json["events"]) == 4
    bad = store("audit", "log", "--since", "last tuesday", "--json")
    assert bad.exit_code == 2 and bad.error["code"] == "usage"


def test_log_as_a_table_when_piped(store):
    add_user(store, "anna")
    r = store("audit", "log", "--login", "anna")
    assert r.exit_code == 0
    header, line = r.stdout.splitlines()
    assert header.split("\t") == ["Id", "At", "Actor", "Action", "Login", "Details"]
    assert line.split("\t")[3:5] == ["user.add", "anna"] and json.loads(line.split("\t")[5])["has_password"]


def test_the_trail_refuses_update_and_delete(store, db_path, engine):
    add_user(store, "anna")
    refused = ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log WHERE id = 1"]
    if engine == "postgresql":  # SQLite has no TRUNCATE (its DELETE without WHERE runs the trigger)
        refused.append("TRUNCATE audit_log")
    conn = connect_db(db_path)
    try:
        for sql in refused:
            with pytest.raises(Exception, match="append-only"):  # sqlite3's error, or the store's
                conn.execute(sql)
    finally:
        conn.close()
    assert rows(db_path, "SELECT count(*) FROM audit_log")[0][0] == 2
    assert store("audit", "log", "--verify").exit_code == 0


# ---- --verify ---------------------------------------------------------------------------------

@pytest.fixture
def trail(store, clock):
    """A store with a handful of events: 1 store.init, 2-3 user.add, 4-5 token.issue, 6 token.revoke."""
    add_user(store, "anna")
    add_user(store, "boris")
    issue(store, "anna")
    clock.advance(61)
    issue(store, "anna")
    assert store("token", "revoke", "anna").exit_code == 0
    return store


def test_verify_an_intact_trail(trail):
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 0
    assert r.json["verified"] is True and r.json["events"] == 6 and r.json["broken"] is None
    assert r.json["head"]["id"] == 6 and len(r.json["head"]["hash"]) == 64
    assert trail("audit", "log", "--verify").stdout == ""  # quiet when piped
    assert "intact: 6 event(s)" in trail("audit", "log", "--verify", "--verbose").stdout


def test_verify_finds_an_edited_event(trail, db_path):
    tamper(db_path, ("UPDATE audit_log SET details = ? WHERE id = 4", ('{"channel":"qr"}',)))
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10
    assert r.json["verified"] is False and r.json["checked"] == 3
    assert r.json["broken"]["id"] == 4 and "does not match its hash" in r.json["broken"]["reason"]
    assert r.error["code"] == "check_found" and "event 4" in r.error["message"]
    plain = trail("audit", "log", "--verify")
    assert plain.exit_code == 10 and "broken at event 4 (token.issue" in plain.stderr


def test_verify_finds_an_edit_whose_hash_was_recomputed(trail, db_path):
    from b24recover.store.audit import event_hash

    row = rows(db_path, "SELECT prev_hash, id, at, actor, action, login FROM audit_log WHERE id = 2")[0]
    forged = event_hash(row[0], row[1], row[2], "someone else", row[4], row[5], rows(
        db_path, "SELECT details FROM audit_log WHERE id = 2")[0][0])
    tamper(db_path, ("UPDATE audit_log SET actor = 'someone else', hash = ? WHERE id = 2", (forged,)))
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"]["id"] == 3
    assert "link to event 2 does not match" in r.json["broken"]["reason"]


def test_verify_finds_a_deleted_event(trail, db_path):
    tamper(db_path, ("DELETE FROM audit_log WHERE id = 5", ()))
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"]["id"] == 6 and "5 before it are missing" in r.json["broken"]["reason"]


def test_verify_finds_a_changed_login_key(trail, db_path):
    tamper(db_path, ("UPDATE audit_log SET login_key = 'boris' WHERE id = 2", ()))
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"]["id"] == 2 and "login_key" in r.json["broken"]["reason"]


def test_verify_finds_the_append_only_triggers_gone(trail, db_path, engine):
    tamper(db_path, restore_guards=False)  # SQLite: dropped; PostgreSQL: disabled
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"] is None
    assert r.json["guards_missing"] == ["UPDATE", "DELETE"] + (["TRUNCATE"] if engine == "postgresql" else [])
    assert "append-only triggers are gone" in r.error["message"]


def test_verify_finds_guards_that_no_longer_refuse(trail, db_path, engine):
    conn = connect_db(db_path)
    try:
        if engine == "postgresql":  # the triggers stay, their function lets everything through
            conn.execute("CREATE OR REPLACE FUNCTION b24recover_append_only() RETURNS trigger LANGUAGE plpgsql"
                         " AS $$ BEGIN RETURN coalesce(NEW, OLD); END $$")
        else:
            with conn:
                for op in ("update", "delete"):
                    conn.execute(f"DROP TRIGGER audit_log_no_{op}")
                    conn.execute(f"CREATE TRIGGER audit_log_no_{op} BEFORE {op} ON audit_log BEGIN SELECT 1; END")
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 6")  # the trail accepts it now
        conn.commit()
    finally:
        conn.close()
    r = trail("audit", "log", "--verify", "--json")
    assert r.exit_code == 10 and r.json["broken"]["id"] == 6
    assert r.json["guards_missing"][:2] == ["UPDATE", "DELETE"]


def test_verify_takes_no_filters(trail):
    r = trail("audit", "log", "--verify", "--login", "anna", "--json")
    assert r.exit_code == 2 and r.error["code"] == "usage"


def test_verify_in_the_service(ctx, store):
    add_user(store, "anna")
    result = svc.verify_chain(ctx)
    assert result["verified"] and result["events"] == result["checked"] == 2
    svc.check_chain(result)  # raises nothing


# ---- the purge rule, on random stores ---------------------------------------------------------

ROW = st.tuples(st.integers(0, 3),                                              # account
                st.sampled_from(["active", "superseded", "used", "revoked"]),
                st.integers(-40 * DAY, DAY),                                    # ended/expired, from now
                st.sampled_from([None, "queued", "failed", "sent", "cancelled"]))  # a message carrying it


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ROW, max_size=40), st.integers(1, 7))
def test_purge_deletes_exactly_the_stale_rows_no_message_needs(ctx, clock, rows_spec, batch):
    conn = ctx.store.conn
    now = clock.now()
    conn.execute("DELETE FROM outbox")
    conn.execute("DELETE FROM control_strings")
    users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
    while len(users) < 4:
        conn.execute("INSERT INTO users (login, login_key, created_at, updated_at) VALUES (?, ?, 0, 0)",
                     (f"u{len(users)}", f"u{len(users)}"))
        users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
    keep, has_active = set(), set()
    for n, (who, state, offset, message) in enumerate(rows_spec):
        if state == "active" and who in has_active:
            state = "revoked"  # at most one active control string per account
        at = now + offset
        if state == "active":
            has_active.add(who)
            row = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, created_at,"
                               " expires_at) VALUES (?, 'link', 'none', ?, ?, ?)"
                               " RETURNING id", (users[who], f"h{n}", at - DAY, at)).fetchone()[0]
        else:
            row = conn.execute("INSERT INTO control_strings (user_id, kind, channel, secret_hash, state, created_at,"
                               " expires_at, ended_at) VALUES (?, 'link', 'none', ?, ?, ?, ?, ?)"
                               " RETURNING id", (users[who], f"h{n}", state, at - DAY, at + DAY, at)).fetchone()[0]
        if message:
            conn.execute("INSERT INTO outbox (user_id, control_string_id, channel, template, lang, recipient, status,"
                         " created_at) VALUES (?, ?, 'email', 'recovery_link', 'en', 'x@example.com', ?, 0)",
                         (users[who], row, message))
        stale = at < now - RETENTION
        if not stale or message in ("queued", "failed"):
            keep.add(row)
    report = svc.purge_tokens(ctx, pacer=svc.Pacer(batch=batch, adaptive=False))
    left = {r[0] for r in conn.execute("SELECT id FROM control_strings")}
    assert left == keep
    assert report["purged"] == len(rows_spec) - len(keep)
    assert svc.stale_tokens(ctx)["total"] == 0
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == sum(1 for r in rows_spec if r[3])
    if ctx.store.engine == "sqlite":  # PostgreSQL checks every reference as it is written
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
