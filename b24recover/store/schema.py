"""Schema migrations, applied in order by sqlite-utils' Migrations (imported only by `init`).

Each entry is (name, SQL) or (name, function(conn)) for a step that must read the schema it
upgrades (a table rebuild). The schema version is the number of entries and is mirrored into
PRAGMA user_version, so every other command checks it with plain sqlite3 at no import cost.

PostgreSQL (store/pg.py) runs the same list: each statement is translated by `to_postgresql`
(INTEGER -> BIGINT, `id INTEGER PRIMARY KEY` -> an identity column); a statement only SQLite
understands (a trigger, a virtual table, a PRAGMA, INSERT OR ...) is refused there unless the
migration has an entry in POSTGRESQL below, which says what PostgreSQL runs instead
(docs/decisions.md, "Adding a migration").
"""

from __future__ import annotations

import re

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL,
    login_key TEXT NOT NULL UNIQUE,
    email TEXT,
    email_key TEXT UNIQUE,
    phone TEXT UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    lang TEXT,
    blocked INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    password_changed_at INTEGER
);
CREATE VIRTUAL TABLE users_fts USING fts5(
    login, name, last_name, content='users', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER users_fts_ai AFTER INSERT ON users BEGIN
    INSERT INTO users_fts(rowid, login, name, last_name) VALUES (new.id, new.login, new.name, new.last_name);
END;
CREATE TRIGGER users_fts_ad AFTER DELETE ON users BEGIN
    INSERT INTO users_fts(users_fts, rowid, login, name, last_name)
    VALUES ('delete', old.id, old.login, old.name, old.last_name);
END;
CREATE TRIGGER users_fts_au AFTER UPDATE OF login, name, last_name ON users BEGIN
    INSERT INTO users_fts(users_fts, rowid, login, name, last_name)
    VALUES ('delete', old.id, old.login, old.name, old.last_name);
    INSERT INTO users_fts(rowid, login, name, last_name) VALUES (new.id, new.login, new.name, new.last_name);
END;

CREATE TABLE social_identities (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (provider, subject)
);
CREATE INDEX social_identities_user ON social_identities(user_id);

-- An address awaiting confirmation: one per account, replaced by the next one.
CREATE TABLE pending_addresses (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    address TEXT NOT NULL,
    address_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Control strings (Bitrix USER_CHECKWORD) and SMS codes; only their hashes are kept.
CREATE TABLE control_strings (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('link', 'code')),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'qr', 'none')),
    purpose TEXT NOT NULL DEFAULT 'recovery' CHECK (purpose IN ('recovery', 'link')),
    address TEXT,
    secret_hash TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'superseded', 'used', 'revoked')),
    end_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
);
-- At most one active control string per account, enforced by the store itself.
CREATE UNIQUE INDEX control_strings_one_active ON control_strings(user_id) WHERE state = 'active';
CREATE INDEX control_strings_user ON control_strings(user_id, created_at);
-- No index on secret_hash alone: a secret is always looked up with its account (user_id), and
-- an index of random hashes made every purge batch rewrite pages all over it (3x slower).
CREATE INDEX control_strings_ended ON control_strings(state, ended_at);
CREATE INDEX control_strings_expires ON control_strings(state, expires_at);

-- Transactional outbox. A message carrying a secret keeps it sealed with the key file
-- (never in clear) only until it is sent or cancelled.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    control_string_id INTEGER REFERENCES control_strings(id) ON DELETE SET NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    template TEXT NOT NULL,
    lang TEXT NOT NULL,
    recipient TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    sealed TEXT,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    sent_at INTEGER
);
CREATE INDEX outbox_status ON outbox(status, id);
CREATE INDEX outbox_user ON outbox(user_id, id);
CREATE INDEX outbox_control_string ON outbox(control_string_id);

-- Previous passwords as HMAC-SHA256 digests keyed by the key file (cheap to compare, useless without the key).
CREATE TABLE password_history (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX password_history_user ON password_history(user_id, id);

-- Append-only, hash-chained audit trail.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    login TEXT,
    login_key TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_login ON audit_log(login_key, id);
CREATE INDEX audit_log_action ON audit_log(action, id);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
""",
    ),
    (
        "0002_bulk_jobs",
        """
-- One row per `bulk reset` input (mode + sorted login keys), so a re-run after a crash
-- resumes the same job instead of resetting accounts a second time.
CREATE TABLE bulk_jobs (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL CHECK (mode IN ('control-string', 'temporary-password')),
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE TABLE bulk_items (
    job_id INTEGER NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
    login_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'skipped', 'failed')),
    reason TEXT,
    done_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, login_key)
);
""",
    ),
    ("0003_bitrix_accounts", "rebuild_users_for_bitrix"),
    (
        "0004_outbox_sending",
        """
-- Exactly-once delivery (SPEC §5). A sender claims a message by moving it to 'sending' with a
-- lease (its random claimant token and an expiry); only that claimant may mark the result, and a
-- crashed sender's message becomes claimable again only when the lease has ended. message_id is
-- the stable Message-ID, fixed at the first claim and reused by every retry.
-- The CHECK on status cannot be changed in place, so the table is rebuilt. No table references
-- outbox (tests/test_outbox_claims.py checks that), so dropping it cascades to nothing and the
-- rebuild needs no foreign_keys=OFF.
CREATE TABLE outbox_new (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    control_string_id INTEGER REFERENCES control_strings(id) ON DELETE SET NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    template TEXT NOT NULL,
    lang TEXT NOT NULL,
    recipient TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    sealed TEXT,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    sent_at INTEGER,
    message_id TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    CHECK ((status = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);
INSERT INTO outbox_new (id, user_id, control_string_id, channel, template, lang, recipient, params, sealed,
                        status, error, attempts, created_at, last_attempt_at, sent_at)
SELECT id, user_id, control_string_id, channel, template, lang, recipient, params, sealed,
       status, error, attempts, created_at, last_attempt_at, sent_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_status ON outbox(status, id);
CREATE INDEX outbox_user ON outbox(user_id, id);
CREATE INDEX outbox_control_string ON outbox(control_string_id);
-- One random value per store: with the row id it makes Message-IDs unique across stores
-- (a test and a production store both have a message 1).
CREATE TABLE store_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    uid TEXT NOT NULL
);
INSERT INTO store_identity (id, uid) VALUES (1, lower(hex(randomblob(16))));
""",
    ),
    (
        "0005_failure_budget",
        """
-- One row per wrong control string or code, for the failure budget ([tokens] account_failures
-- per 24 h) and the answers of later tries. subject: 'u:<users.id>' for an account, 'k:<HMAC of
-- the typed login>' for a login that does not exist (tried like a real one, never kept in clear).
CREATE TABLE recovery_failures (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    at INTEGER NOT NULL,
    code_shaped INTEGER NOT NULL DEFAULT 0,
    code_id INTEGER NOT NULL DEFAULT 0  -- the account's newest SMS code at the time (0: none)
);
CREATE INDEX recovery_failures_subject ON recovery_failures(subject, at);
CREATE INDEX recovery_failures_at ON recovery_failures(at);
""",
    ),
    (
        "0006_safety",
        """
-- The --out file a temporary-password job created (device and inode): a resumed run may reopen
-- that very file and no other existing one (SPEC §5).
ALTER TABLE bulk_jobs ADD COLUMN out_dev INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN out_ino INTEGER;

-- The Unicode TR39 confusable skeleton of the login (services/identifiers.login_skeleton):
-- a new login that looks like an existing one is a conflict. Not unique: accounts imported
-- before this rule may already look alike. Filled by `init` for older rows.
ALTER TABLE users ADD COLUMN login_skeleton TEXT;
CREATE INDEX users_login_skeleton ON users(login_skeleton);

-- The head of the audit chain, kept outside audit_log and written in the same transaction as
-- each event: the newest event's id and hash, authenticated with the key file (HMAC-SHA256), so
-- deleting the newest events is detected by `audit log --verify`.
CREATE TABLE audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
""",
    ),
    (
        "0007_portal_sync",
        """
-- `portal sync` (SPEC §6): one row holding where the next read starts. It is written in the
-- same transaction as each batch of accounts, so a sync killed at any point resumes exactly.
CREATE TABLE portal_sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor_ts TEXT,              -- (TIMESTAMP_X, ID) of the newest row applied by a finished run
    cursor_id INTEGER,
    horizon TEXT,                -- the portal's clock when that run began (rows near it are re-read)
    run_id INTEGER NOT NULL DEFAULT 0,  -- counts runs; refused rows name the run that refused them
    run_mode TEXT CHECK (run_mode IN ('full', 'incremental')),  -- a run in progress; NULL when none
    run_started_at INTEGER,
    run_horizon TEXT,
    run_after_ts TEXT,           -- where the run in progress resumes: (TIMESTAMP_X, ID), or ID for full
    run_after_id INTEGER,
    run_max_ts TEXT,             -- the newest (TIMESTAMP_X, ID) the run in progress has read
    run_max_id INTEGER,
    run_counts TEXT NOT NULL DEFAULT '{}',
    last_sync_at INTEGER,
    last_full_at INTEGER,
    email_unique INTEGER,        -- the portal's new_user_email_uniq_check at the last run (NULL: unset)
    engine TEXT,
    version TEXT
);
-- What the last read of each portal account saw. `fields` holds a short digest per field (never
-- the values; "v1:" + 16 hex digits per field, services/portal_sync.FIELDS order), so a later
-- read can tell which fields the portal changed since.
CREATE TABLE portal_accounts (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    timestamp_x TEXT,
    digest TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '',
    checkword_timeout INTEGER,   -- minutes: the shortest of the user's groups (NULL: Bitrix's default)
    policy TEXT NOT NULL DEFAULT '{}'  -- the strictest password rules of the user's groups
);
-- Portal rows that could not become accounts, with the reason; kept until a read accepts them.
-- A 'conflict' (an identifier held by another account) is retried at the end of every run, as
-- a later row may free it; a 'data' refusal waits until the portal row changes.
CREATE TABLE portal_refused (
    portal_id INTEGER PRIMARY KEY,
    login TEXT,
    reason TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('data', 'conflict')),
    run_id INTEGER NOT NULL,
    at INTEGER NOT NULL
);
""",
    ),
    (
        "0008_portal_writes",
        """
-- Write-backs to the portal (SPEC §6): queued in the same transaction as the local change,
-- applied after the commit by a claimant holding a lease (store/leases.py), retried by
-- `portal push`. `payload` holds Bitrix hashes and flags, never a clear password or checkword.
CREATE TABLE portal_writes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    portal_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('password', 'checkword', 'blocked', 'email', 'clear_checkword')),
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'failed', 'done')),
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
CREATE INDEX portal_writes_open ON portal_writes(portal_id, id) WHERE status != 'done';
-- The CHECKWORD b24recover last wrote for an account (a SHA-256 of the stored Bitrix hash, not
-- the hash): a portal row holding anything else means the portal wrote its own since.
CREATE TABLE portal_checkwords (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    control_string_id INTEGER,
    written_at INTEGER NOT NULL,
    superseded_at INTEGER
);
""",
    ),
    (
        "0009_portal_write_phone",
        """
-- A write-back of the sign-in phone (b_user_phone_auth, SPEC §6). The CHECK on kind cannot be
-- changed in place, so the table is rebuilt; no table references portal_writes.
CREATE TABLE portal_writes_new (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    portal_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('password', 'checkword', 'blocked', 'email', 'clear_checkword', 'phone')),
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'failed', 'done')),
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
INSERT INTO portal_writes_new SELECT id, user_id, portal_id, kind, payload, status, lease_owner, lease_until,
    attempts, last_attempt_at, error, created_at, done_at FROM portal_writes;
DROP TABLE portal_writes;
ALTER TABLE portal_writes_new RENAME TO portal_writes;
CREATE INDEX portal_writes_open ON portal_writes(portal_id, id) WHERE status != 'done';
""",
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


class PgVariant:
    """What PostgreSQL runs for one migration.

    extra: the migration's portable statements run translated, its SQLite-only ones are
    skipped, and these statements run after them (full-text index, triggers).
    replace: these statements run instead of the whole migration (for a SQLite table rebuild,
    which PostgreSQL does with ALTER TABLE)."""

    def __init__(self, *, extra: str = "", replace: str | None = None):
        self.extra, self.replace = extra, replace


# Keyed by migration name. A migration with only CREATE TABLE/INDEX and ALTER TABLE ADD COLUMN
# needs no entry; a Python step (STEPS) needs a `replace`.
POSTGRESQL: dict[str, PgVariant] = {
    "0001_initial": PgVariant(extra="""
-- Name search: words of login, name and last name, diacritics folded by unaccent, prefix-matched
-- with to_tsquery (the same matches as SQLite's FTS5 unicode61 remove_diacritics).
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH CONFIGURATION b24recover_names (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION b24recover_names
    ALTER MAPPING FOR asciiword, word, numword, asciihword, hword, numhword, hword_asciipart,
                      hword_part, hword_numpart, int, uint
    WITH unaccent, simple;
CREATE INDEX users_names ON users USING gin (to_tsvector('b24recover_names',
    regexp_replace(login || ' ' || name || ' ' || last_name, '[[:punct:][:space:]]+', ' ', 'g')));

-- The audit trail is append-only.
CREATE FUNCTION b24recover_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION b24recover_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION b24recover_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION b24recover_append_only();
"""),
    # SQLite rebuilds users (rebuild_users_for_bitrix); PostgreSQL drops the two UNIQUE
    # constraints in place (their default names) and adds the columns.
    "0003_bitrix_accounts": PgVariant(replace="""
ALTER TABLE users ADD COLUMN portal_id BIGINT UNIQUE;
ALTER TABLE users ADD COLUMN external TEXT;
ALTER TABLE users ADD COLUMN profile_phone TEXT;
ALTER TABLE users ADD COLUMN portal_synced_at BIGINT;
ALTER TABLE users ADD COLUMN portal_gone BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users DROP CONSTRAINT users_login_key_key;
ALTER TABLE users DROP CONSTRAINT users_email_key_key;
CREATE UNIQUE INDEX users_login ON users(login_key, coalesce(external, ''));
CREATE INDEX users_email ON users(email_key) WHERE email_key IS NOT NULL;
CREATE INDEX users_portal_synced ON users(portal_synced_at) WHERE portal_id IS NOT NULL;
"""),
    # SQLite rebuilds outbox to change its status CHECK; PostgreSQL replaces the constraint.
    "0004_outbox_sending": PgVariant(replace="""
ALTER TABLE outbox ADD COLUMN message_id TEXT;
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until BIGINT;
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled'));
ALTER TABLE outbox ADD CONSTRAINT outbox_lease_check
    CHECK ((status = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL));
CREATE TABLE store_identity (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    uid TEXT NOT NULL
);
INSERT INTO store_identity (id, uid) VALUES (1, md5(random()::text || clock_timestamp()::text));
"""),
    # SQLite rebuilds portal_writes to change its kind CHECK; PostgreSQL replaces the constraint.
    "0009_portal_write_phone": PgVariant(replace="""
ALTER TABLE portal_writes DROP CONSTRAINT portal_writes_kind_check;
ALTER TABLE portal_writes ADD CONSTRAINT portal_writes_kind_check
    CHECK (kind IN ('password', 'checkword', 'blocked', 'email', 'clear_checkword', 'phone'));
"""),
}

# A pattern string, compiled on first use by `init` (every command imports this module).
_SQLITE_ONLY = (
    r"\b(PRAGMA|VIRTUAL\s+TABLE|TRIGGER|INSERT\s+OR|REPLACE\s+INTO|AUTOINCREMENT|WITHOUT\s+ROWID|sqlite_\w+"
    r"|strftime|julianday|datetime\s*\(|GLOB)\b")


def to_postgresql(statement: str) -> str | None:
    """The PostgreSQL form of one portable SQLite statement, or None when it is SQLite-only."""
    if re.search(_SQLITE_ONLY, statement, re.I):
        return None
    # The audit trail numbers its own events (last + 1 under the write lock): a plain key.
    out = re.sub(r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                 statement, flags=re.I)
    return re.sub(r"\bINTEGER\b", "BIGINT", out, flags=re.I)


def postgresql_sql(name: str, sql: str) -> list[str]:
    """The statements PostgreSQL runs for migration `name`; refuses a SQLite-only statement
    that no POSTGRESQL entry stands in for."""
    variant = POSTGRESQL.get(name)
    if variant is not None and variant.replace is not None:
        return _split_pg(variant.replace)
    if sql in STEPS:  # a step written in Python for SQLite: PostgreSQL needs its own form
        raise ValueError(f"migration {name} is a SQLite step ({sql}); add POSTGRESQL[{name!r}] = "
                         "PgVariant(replace=...) in store/schema.py")
    out = []
    for statement in _split(sql):
        translated = to_postgresql(statement)
        if translated is None:
            if variant is None:
                raise ValueError(f"migration {name} has a statement only SQLite runs; add POSTGRESQL[{name!r}]"
                                 f" in store/schema.py: {statement[:80]}")
            continue
        out.append(translated)
    return out + (_split_pg(variant.extra) if variant is not None else [])


def _split_pg(script: str) -> list[str]:
    """Statements of a PostgreSQL script: split at ';' ending a line, outside $$ bodies."""
    statements, current, in_body = [], "", False
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.strip().startswith("--")):
            continue
        current += line
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            statements.append(current.strip().rstrip(";"))
            current = ""
    if current.strip():
        statements.append(current.strip().rstrip(";"))
    return statements


def apply_migrations(conn) -> list[str]:
    """Apply pending migrations on `conn`, which must already be inside BEGIN IMMEDIATE."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("b24recover")
    for number, (name, sql) in enumerate(MIGRATIONS, start=1):

        def step(db, sql=sql, number=number):
            if sql in STEPS:
                STEPS[sql](db.conn)
            else:
                for statement in _split(sql):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")

        migrations(name=name)(step)
    db = Database(conn)
    pending = [m.name for m in migrations.pending(db)]
    migrations.apply(db)
    return pending


def _split(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies whole."""
    import sqlite3

    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.strip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


# ---- steps written in Python ----------------------------------------------------------------------

_BITRIX_COLUMNS = """,
    portal_id INTEGER UNIQUE,             -- b_user.ID of an account read from a portal
    external TEXT,                        -- EXTERNAL_AUTH_ID of an account managed elsewhere (LDAP#1, bot, ...)
    profile_phone TEXT,                   -- PERSONAL_PHONE kept as profile data (free text or shared)
    portal_synced_at INTEGER,             -- when the portal row was last read
    portal_gone INTEGER NOT NULL DEFAULT 0  -- the portal no longer has this account
)"""


def rebuild_users_for_bitrix(conn) -> None:
    """0003: accounts as Bitrix keeps them (SPEC §4, §6).

    Logins become unique per (login, external id) and email loses its UNIQUE constraint (the
    service enforces it when `[accounts] unique_email` is true): SQLite cannot drop a column
    constraint, so the table is rebuilt by its 12-step procedure. The new table is written from
    the stored CREATE statement, so columns other migrations added are kept; every index and
    trigger on `users` (the full-text ones too) is re-created, and the row ids stay, so child
    rows and the FTS index still match. The runner has foreign keys off for this (a DROP TABLE
    would otherwise run the children's ON DELETE CASCADE) and checks them before committing.
    """
    import re

    create = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'").fetchone()[0]
    others = [r[0] for r in conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'users' AND type IN ('index', 'trigger') AND sql IS NOT NULL")]
    columns = [r[1] for r in conn.execute("PRAGMA table_info(users)")]
    body = create[create.index("(") + 1:create.rindex(")")]
    body = re.sub(r"(\blogin_key\s+TEXT\s+NOT\s+NULL)\s+UNIQUE", r"\1", body, flags=re.I)
    body = re.sub(r"(\bemail_key\s+TEXT)\s+UNIQUE", r"\1", body, flags=re.I)
    conn.execute("CREATE TABLE users_rebuilt (" + body.rstrip() + _BITRIX_COLUMNS)
    names = ", ".join(columns)
    conn.execute(f"INSERT INTO users_rebuilt ({names}) SELECT {names} FROM users")
    conn.execute("DROP TABLE users")
    conn.execute("ALTER TABLE users_rebuilt RENAME TO users")
    for sql in others:
        conn.execute(sql)
    conn.execute("CREATE UNIQUE INDEX users_login ON users(login_key, ifnull(external, ''))")
    conn.execute("CREATE INDEX users_email ON users(email_key) WHERE email_key IS NOT NULL")
    conn.execute("CREATE INDEX users_portal_synced ON users(portal_synced_at) WHERE portal_id IS NOT NULL")


STEPS = {"rebuild_users_for_bitrix": rebuild_users_for_bitrix}
