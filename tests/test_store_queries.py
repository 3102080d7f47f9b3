"""The store functions the services call instead of running SQL themselves: the importer's batch
queries, bulk jobs and their savepoint, and the small per-account queries."""

from __future__ import annotations

import pytest

from b24recover.errors import B24Error
from b24recover.services.accounts import revoke_on_change
from b24recover.store import bulk as bulk_store
from b24recover.store import imports as import_store
from b24recover.store import outbox as outbox_store
from b24recover.store import tokens as token_store
from b24recover.store import users as user_store
from b24recover.store.db import init_store

NOW = 1_790_000_000


@pytest.fixture
def db(db_path):  # once per engine (conftest `engine`)
    store, _ = init_store(db_path)
    yield store
    store.close()


def account(login: str, email: str | None = None, phone: str | None = None, name: str = "") -> tuple:
    """A row in INSERT_COLUMNS order."""
    return (login, login.lower(), email, email.lower() if email else None, phone, name, "", "en", 0, None,
            NOW, NOW, None, None, None, None)  # external, profile_phone, portal_id


def add(conn, login: str, **fields) -> int:
    return user_store.insert(conn, {"login": login, "login_key": login.lower(), "created_at": NOW,
                                    "updated_at": NOW, **fields})


def add_token(conn, user_id: int, state: str = "active") -> int:
    token_id = token_store.insert(conn, user_id=user_id, kind="link", channel="email", purpose="recovery",
                                  address="a@example.com", secret_hash=f"h{user_id}-{NOW}", now=NOW,
                                  expires_at=NOW + 3600)
    if state != "active":
        token_store.supersede_active(conn, user_id, NOW)
    return token_id


# ---- the importer's batch queries -----------------------------------------------------------------

def test_insert_many_spans_several_statements_and_returns_the_ids(db):
    rows = [account(f"user{i:05d}", name=f"Name{i}") for i in range(2 * import_store._ROWS_PER_INSERT + 7)]
    with db.write() as conn:
        assert import_store.insert_many(conn, rows[:3], returning=False) == {}
        ids_by_key = import_store.insert_many(conn, rows[3:], returning=True)
    assert len(ids_by_key) == len(rows) - 3
    for (key, external), user_id in ids_by_key.items():
        assert user_store.by_id(db.conn, user_id)["login_key"] == key and external is None
    assert user_store.max_id(db.conn) == len(rows)
    # The full-text trigger ran for every row of a multi-row INSERT.
    last = len(rows) - 1  # (the rows per statement depend on the number of columns)
    assert [r["login"] for r in user_store.by_name(db.conn, f'"Name{last}"*')] == [f"user{last:05d}"]


def test_keys_in_use_looks_in_the_table_of_each_column(db):
    with db.write() as conn:
        import_store.insert_many(conn, [account("Anna", "anna@example.com", "+79161234567")], returning=False)
        boris = add(conn, "boris")
        user_store.set_pending(conn, boris, "email", "Boris@Example.com", "boris@example.com", NOW)
    conn = db.conn
    many = [f"nobody{i}" for i in range(2 * import_store.IN_CHUNK)] + ["anna"]  # more than one IN list
    assert import_store.keys_in_use(conn, "login_key", many) == {"anna"}
    assert import_store.keys_in_use(conn, "email_key", ["anna@example.com", "boris@example.com"]) == {"anna@example.com"}
    assert import_store.keys_in_use(conn, "phone", ["+79161234567", "+79160000000"]) == {"+79161234567"}
    assert import_store.keys_in_use(conn, "address_key", ["anna@example.com", "boris@example.com"]) == {"boris@example.com"}
    assert import_store.keys_in_use(conn, "login_key", []) == set()


def test_keys_in_use_takes_only_known_columns(db):
    with pytest.raises(KeyError):
        import_store.keys_in_use(db.conn, "login_key FROM users; --", ["x"])


def test_socials_in_use_over_several_chunks(db):
    with db.write() as conn:
        anna = add(conn, "anna")
        user_store.add_social(conn, anna, "vk", "42", NOW)
        user_store.add_social(conn, anna, "google", "7", NOW)
    asked = [("vk", str(i)) for i in range(import_store.IN_CHUNK)] + [("google", "7"), ("google", "42")]
    assert import_store.socials_in_use(db.conn, asked) == {("vk", "42"), ("google", "7")}
    assert import_store.socials_in_use(db.conn, []) == set()


def test_seen_table_keeps_the_first_line_of_each_hash(db):
    conn = db.conn
    import_store.open_seen(conn)
    import_store.remember_seen(conn, iter([(5, 10), (-3, 11)]))
    import_store.remember_seen(conn, [(5, 99), (7, 12)])
    assert import_store.seen_lines(conn, [5, -3, 7, 8]) == {5: 10, -3: 11, 7: 12}
    assert not conn.in_transaction
    # A second import on the same connection starts empty.
    import_store.open_seen(conn)
    assert import_store.seen_lines(conn, [5]) == {}
    import_store.close_seen(conn)
    assert conn.execute("SELECT count(*) FROM temp.sqlite_master WHERE name = 'import_seen'").fetchone()[0] == 0


def test_seen_table_is_written_while_another_process_holds_the_write_lock(db, tmp_path):
    from b24recover.store.db import open_store

    other = open_store(db.path)
    import_store.open_seen(db.conn)
    with other.write():
        import_store.remember_seen(db.conn, [(1, 2)])
    assert import_store.seen_lines(db.conn, [1]) == {1: 2}
    other.close()


def test_cache_size_round_trip(db):
    before = import_store.cache_size(db.conn)
    import_store.set_cache_size(db.conn, -4096)
    assert import_store.cache_size(db.conn) == -4096
    import_store.set_cache_size(db.conn, before)
    assert import_store.cache_size(db.conn) == before


# ---- users, control strings, outbox ------------------------------------------------------------------

def test_max_id_and_failed_attempts(db):
    assert user_store.max_id(db.conn) == 0
    with db.write() as conn:
        add(conn, "anna")
        boris = add(conn, "boris")
        user_store.count_failed_attempt(conn, boris)
        user_store.count_failed_attempt(conn, boris)
    assert user_store.max_id(db.conn) == boris
    assert user_store.by_id(db.conn, boris)["failed_attempts"] == 2
    assert user_store.by_login_key(db.conn, "anna")["failed_attempts"] == 0


def test_recent_and_latest_control_strings_newest_first(db):
    with db.write() as conn:
        anna, boris = add(conn, "anna"), add(conn, "boris")
        assert token_store.latest(conn, anna) is None
        first = add_token(conn, anna, state="superseded")
        add_token(conn, boris)
        second = add_token(conn, anna)
    assert [r["id"] for r in token_store.recent(db.conn, anna, 10)] == [second, first]
    assert [r["id"] for r in token_store.recent(db.conn, anna, 1)] == [second]
    assert token_store.latest(db.conn, anna)["state"] == "active"
    assert token_store.latest(db.conn, anna)["id"] == second


def test_recent_messages_of_an_account(db):
    with db.write() as conn:
        anna = add(conn, "anna")
        assert outbox_store.last_for_user(conn, anna) is None
        ids = [outbox_store.insert(conn, user_id=anna, token_id=None, channel="email", template="password_changed",
                                   lang="en", recipient="anna@example.com", params={}, sealed=None, now=NOW + i)
               for i in range(3)]
    assert [m["id"] for m in outbox_store.recent_for_user(db.conn, anna, 2)] == [ids[2], ids[1]]
    assert outbox_store.last_for_user(db.conn, anna)["id"] == ids[-1]


@pytest.mark.parametrize("changes, revoked, reason", [
    ({"blocked": 1, "email_key": "new@example.com"}, 1, "blocked"),
    ({"email": "New@example.com", "email_key": "new@example.com"}, 1, "account_changed"),
    ({"phone": "+79161234567"}, 1, "account_changed"),
    ({"login": "Anya", "login_key": "anya"}, 1, "account_changed"),
    ({"password_hash": "$6$x", "password_changed_at": NOW}, 1, "account_changed"),
    ({"blocked": 0, "name": "Anna", "updated_at": NOW}, 0, None),
])
def test_which_changes_revoke_the_control_string(db, changes, revoked, reason):
    with db.write() as conn:
        anna = add(conn, "anna")
        token_id = add_token(conn, anna)
        assert revoke_on_change(conn, anna, changes, NOW + 5) == revoked
    row = token_store.by_id(db.conn, token_id)
    assert row["state"] == ("revoked" if revoked else "active")
    assert row["end_reason"] == reason


# ---- bulk jobs ------------------------------------------------------------------------------------

def test_bulk_job_life(db):
    with db.write() as conn:
        assert bulk_store.job_by_fingerprint(conn, "f1") is None
        job = bulk_store.create_job(conn, "f1", "control-string", NOW)
        bulk_store.mark_item(conn, job, "anna", "failed", "throttled", NOW)
        bulk_store.mark_item(conn, job, "anna", "done", None, NOW + 1)  # a retry overwrites
        bulk_store.mark_item(conn, job, "boris", "skipped", "blocked", NOW)
    assert bulk_store.job_by_fingerprint(db.conn, "f1")["id"] == job
    assert bulk_store.item_statuses(db.conn, job) == {"anna": "done", "boris": "skipped"}
    assert bulk_store.item_status(db.conn, job, "anna") == "done"
    assert bulk_store.item_status(db.conn, job, "carla") is None
    item = db.conn.execute("SELECT reason, done_at FROM bulk_items WHERE login_key = 'anna'").fetchone()
    assert tuple(item) == (None, NOW + 1)
    with db.write() as conn:
        bulk_store.finish_job(conn, job, NOW + 9)
    assert db.conn.execute("SELECT finished_at FROM bulk_jobs WHERE id = ?", (job,)).fetchone()[0] == NOW + 9
    with db.write() as conn:
        bulk_store.delete_job(conn, job)
    assert bulk_store.job_by_fingerprint(db.conn, "f1") is None
    assert bulk_store.item_statuses(db.conn, job) == {}


def test_bulk_item_savepoint_undoes_only_the_failed_account(db):
    with db.write() as conn:
        with bulk_store.item(conn):
            add(conn, "anna")
        with pytest.raises(B24Error):
            with bulk_store.item(conn):
                add(conn, "boris")
                raise B24Error("not_found", "gone")
        add(conn, "carla")
    logins = [r[0] for r in db.conn.execute("SELECT login FROM users ORDER BY id")]
    assert logins == ["anna", "carla"]


def test_bulk_item_savepoint_leaves_other_errors_to_the_transaction(db):
    with pytest.raises(ZeroDivisionError):
        with db.write() as conn:
            with bulk_store.item(conn):
                add(conn, "anna")
                1 / 0
    assert user_store.max_id(db.conn) == 0
    assert not db.conn.in_transaction
