"""store/tokens.py, row by row (found by `make mutants`): what ending a control string does to
its undelivered message, the exact edges of the counting and expiry queries, and the state
filters of `token list`."""

from __future__ import annotations

import json

import pytest

from b24recover.store import outbox as outbox_store
from b24recover.store import tokens as token_store
from b24recover.store import users as user_store
from b24recover.store.db import init_store

NOW = 1_790_000_000


@pytest.fixture
def db(db_path):
    store, _ = init_store(db_path)
    yield store
    store.close()


def add(conn, login: str) -> int:
    return user_store.insert(conn, {"login": login, "login_key": login.lower(), "created_at": NOW,
                                    "updated_at": NOW})


def add_token(conn, user_id: int, *, now: int = NOW, ttl: int = 3600, kind: str = "link",
              secret_hash: str | None = None) -> int:
    return token_store.insert(conn, user_id=user_id, kind=kind, channel="email", purpose="recovery",
                              address="a@example.com", secret_hash=secret_hash or f"h{user_id}-{now}-{kind}",
                              now=now, expires_at=now + ttl)


def message(conn, user_id: int, token_id: int | None, status: str = "queued", sealed: str | None = "c2VhbGVk") -> int:
    msg = outbox_store.insert(conn, user_id=user_id, token_id=token_id, channel="email", template="recovery",
                              lang="en", recipient="a@example.com", params={}, sealed=sealed, now=NOW)
    if status != "queued":
        conn.execute("UPDATE outbox SET status = ? WHERE id = ?", (status, msg))
    return msg


def outbox_row(conn, msg: int):
    return tuple(conn.execute("SELECT status, sealed, error FROM outbox WHERE id = ?", (msg,)).fetchone())


@pytest.mark.parametrize("end, state, reason, note", [
    (lambda conn, uid: token_store.supersede_active(conn, uid, NOW + 9), "superseded", "newer_request",
     "superseded by a newer request before delivery"),
    (lambda conn, uid: token_store.revoke_active(conn, uid, NOW + 9, "blocked"), "revoked", "blocked",
     "control string revoked before delivery"),
])
def test_ending_the_active_string_cancels_its_undelivered_messages(db, end, state, reason, note):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        token = add_token(conn, anna)
        queued, failed = message(conn, anna, token), message(conn, anna, token, "failed")
        sent = message(conn, anna, token, "sent")
        notice = message(conn, anna, None, sealed=None)  # a notice carries no secret: it still goes out
        other = message(conn, boris, add_token(conn, boris))
        assert end(conn, anna) == 1
        assert end(conn, anna) == 0  # nothing active any more
    row = token_store.by_id(db.conn, token)
    assert (row["state"], row["end_reason"], row["ended_at"]) == (state, reason, NOW + 9)
    assert outbox_row(db.conn, queued) == ("cancelled", None, note)
    assert outbox_row(db.conn, failed) == ("cancelled", None, note)
    assert outbox_row(db.conn, sent)[0] == "sent"
    assert outbox_row(db.conn, notice) == ("queued", None, None)
    assert outbox_row(db.conn, other) == ("queued", "c2VhbGVk", None)
    assert token_store.active(db.conn, boris) is not None and token_store.active(db.conn, anna) is None


def test_insert_keeps_every_column(db):
    with db.write() as conn:
        anna = add(conn, "anna")
        token = token_store.insert(conn, user_id=anna, kind="code", channel="sms", purpose="recovery",
                                   address="+79123456789", secret_hash="f" * 64, now=NOW, expires_at=NOW + 600)
    row = token_store.by_id(db.conn, token)
    assert (row["user_id"], row["kind"], row["channel"], row["purpose"], row["address"], row["secret_hash"],
            row["created_at"], row["expires_at"], row["state"], row["attempts"]) == \
        (anna, "code", "sms", "recovery", "+79123456789", "f" * 64, NOW, NOW + 600, "active", 0)


def test_count_since_counts_strictly_after_and_names_the_oldest(db):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        for t in (NOW, NOW + 10, NOW + 20):
            add_token(conn, anna, now=t)
            token_store.supersede_active(conn, anna, t)
        add_token(conn, boris, now=NOW + 30)
    assert token_store.count_since(db.conn, anna, NOW) == (2, NOW + 10)  # the one at NOW is not after it
    assert token_store.count_since(db.conn, anna, NOW - 1) == (3, NOW)
    assert token_store.count_since(db.conn, anna, NOW + 20) == (0, None)
    assert token_store.last_created(db.conn, anna) == NOW + 20
    assert token_store.last_created(db.conn, add(db.conn, "carl")) is None


def test_matching_finds_the_accounts_newest_string_with_that_hash(db):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        older = add_token(conn, anna, secret_hash="same")
        token_store.supersede_active(conn, anna, NOW)
        newer = add_token(conn, anna, now=NOW + 1, secret_hash="same")
        add_token(conn, boris, secret_hash="theirs")
    assert older != newer
    assert token_store.matching(db.conn, anna, "same")["id"] == newer
    assert token_store.matching(db.conn, anna, "theirs") is None
    assert token_store.matching(db.conn, boris, "theirs") is not None


def test_consume_only_an_active_unexpired_string_and_only_once(db):
    with db.write() as conn:
        anna = add(conn, "anna")
        token = add_token(conn, anna, ttl=60)
        assert token_store.consume(conn, token, NOW + 61) is False  # expired a second ago
        assert token_store.consume(conn, token, NOW + 60) is True   # the last valid second
        assert token_store.consume(conn, token, NOW + 60) is False  # used already
    row = token_store.by_id(db.conn, token)
    assert (row["state"], row["end_reason"], row["ended_at"]) == ("used", "redeemed", NOW + 60)


def test_wrong_tries_count_until_the_limit_kills_the_code(db):
    with db.write() as conn:
        anna = add(conn, "anna")
        code = add_token(conn, anna, kind="code")
        assert token_store.count_wrong_try(conn, code, 3, NOW + 1) is False
        assert token_store.count_wrong_try(conn, code, 3, NOW + 2) is False
        assert token_store.by_id(conn, code)["attempts"] == 2
        assert token_store.count_wrong_try(conn, code, 3, NOW + 3) is True
        assert token_store.count_wrong_try(conn, code, 3, NOW + 4) is False  # dead already, not counted
    row = token_store.by_id(db.conn, code)
    assert (row["state"], row["end_reason"], row["ended_at"], row["attempts"]) == \
        ("revoked", "too_many_attempts", NOW + 3, 3)


def test_for_user_filters_by_state_and_account_newest_first(db):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        superseded = add_token(conn, anna, ttl=10)
        token_store.supersede_active(conn, anna, NOW)
        lapsed = add_token(conn, anna, now=NOW + 1, ttl=10)  # still 'active' in the table, but expired
        live = add_token(conn, boris, ttl=3600)
    now = NOW + 100

    def ids(user, states, limit=10):
        return [r["id"] for r in token_store.for_user(db.conn, user, states, now, limit)]

    assert ids(anna, None) == [lapsed, superseded]
    assert ids(None, None) == [live, lapsed, superseded]
    assert ids(None, None, limit=1) == [live]
    assert ids(None, ("active",)) == [live]
    assert ids(None, ("expired",)) == [lapsed]
    assert ids(None, ("superseded",)) == [superseded]
    assert ids(None, ("expired", "superseded")) == [lapsed, superseded]
    assert ids(boris, ("expired", "active")) == [live]
    assert ids(anna, ("active",)) == []
    assert [r["login"] for r in token_store.for_user(db.conn, None, None, now, 10)] == ["boris", "anna", "anna"]


def test_active_is_the_accounts_one_active_string(db):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        assert token_store.active(conn, anna) is None
        first = add_token(conn, anna)
        token_store.supersede_active(conn, anna, NOW)
        second = add_token(conn, anna, now=NOW + 1)
        add_token(conn, boris)
    assert token_store.active(db.conn, anna)["id"] == second != first
    assert json.dumps(dict(token_store.active(db.conn, anna))["state"]) == '"active"'


@pytest.mark.parametrize("purpose, still_pending", [("link", False), ("recovery", True)])
def test_ending_a_link_confirmation_drops_the_address_it_was_confirming(db, purpose, still_pending):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        user_store.set_pending(conn, anna, "email", "new@example.com", "new@example.com", NOW)
        user_store.set_pending(conn, boris, "email", "new@example.com", "new@example.com", NOW)
        token_store.insert(conn, user_id=anna, kind="link", channel="email", purpose=purpose,
                           address="new@example.com", secret_hash="h", now=NOW, expires_at=NOW + 3600)
        assert token_store.revoke_active(conn, anna, NOW + 1, "account_changed") == 1
    assert (user_store.pending(db.conn, anna) is not None) is still_pending
    assert user_store.pending(db.conn, boris) is not None  # another account's pending address stays
