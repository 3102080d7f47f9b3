"""The store on PostgreSQL (SPEC §7): the same Store interface as SQLite, over psycopg2.

Imported only when `--db` is a `postgresql://` URL, so a SQLite command never pays for the driver
(psycopg2 costs ~50 ms of start-up; psycopg 3 ~280 ms).

The locking contract is the one SQLite gives: ONE writer at a time for the whole store.
`write()` begins a transaction whose first statement is `pg_advisory_xact_lock(STORE_LOCK)`, the
equivalent of `BEGIN IMMEDIATE`, on every node. So the rules that read and then write (the audit
chain's last+1, the throttle's count-then-insert, the importer's "every id of this batch is ours",
init's migrations) stay correct across nodes at READ COMMITTED, and writers never deadlock among
themselves (every one waits on the same lock first, holding nothing). Reads outside `write()` run
in autocommit, each statement on a fresh snapshot, holding no lock between statements.

Why a `with store.write()` body is not run again after a deadlock or a serialization failure
(Store.transact bodies are; a `with` body cannot be re-entered, and its side effects outside the
store, an --out file, a mail, could not be undone):
- Among b24recover processes neither can happen. Deadlock needs a cycle of waits; a writer's first
  lock is STORE_LOCK, requested while holding nothing, and every other lock it takes it takes while
  holding STORE_LOCK, so no writer waits for a lock held by another writer except STORE_LOCK itself,
  whose holder waits for no writer. Autocommit reads take only relation locks for one statement
  and wait for nothing but a migration's lock (held by init, which waits for none of them).
- Serialization failures exist only above READ COMMITTED: write() names READ COMMITTED in its
  BEGIN, so a server or role default of REPEATABLE READ or SERIALIZABLE cannot bring them in.
- What is left is a foreign session (a script, psql) holding row locks on the store's tables or
  taking STORE_LOCK itself: then the server may pick this transaction as a deadlock's victim.
  Nothing of it was written; the command ends with store_locked (exit 8), saying to run it again
  (tests/test_pg_deadlock.py).
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

from ..errors import B24Error
from .commit_hooks import AfterCommit
from .url import StoreURL


def _import_driver():
    """Import psycopg2 without Python's ssl module: psycopg2 imports it only so that Python sets
    OpenSSL 1.0's locking callbacks (psycopgmodule.c, libcrypto_threads_init), and falls back to
    libpq's own set-up when it cannot. OpenSSL 1.1+ (all Python 3.11 accepts) needs no callbacks,
    libpq still speaks TLS itself, and the import costs ~10 ms of every PostgreSQL start."""
    import sys

    if "psycopg2" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # `import ssl` raises ImportError while this stands
    try:
        import psycopg2  # noqa: F401
    finally:
        del sys.modules["ssl"]  # a later `import ssl` (SMTP, PyMySQL) loads it as usual


_import_driver()

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402
import psycopg2.extensions  # noqa: E402

# One bigint names the store-wide write lock (b"b24rcvr1"); `init` migrates under it too, so
# writers wait for a migration and nodes racing to init queue on it.
STORE_LOCK = int.from_bytes(b"b24rcvr1", "big", signed=True)
BUSY_TIMEOUT_MS = int(os.environ.get("B24RECOVER_BUSY_TIMEOUT_MS", "10000"))
CONNECT_TIMEOUT_S = 10
CONNECT_TRIES = 4        # "too many clients" and "starting up" are worth a short wait
TRANSACTION_TRIES = 5    # serialization failures and deadlocks (see Store.transact)

_RETRY_CONNECT = ("53300", "57P03")  # too_many_connections, cannot_connect_now
_RETRY_TRANSACTION = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)
_LOCKED = (psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return re.sub(r"^(FATAL|ERROR):\s+", "", text[0]) if text else type(exc).__name__


def translate(exc: psycopg2.Error, name) -> B24Error:
    """A driver error as the store error it means (exit 8), naming the server and the cause."""
    if isinstance(exc, _LOCKED):
        return B24Error("store_locked",
                        f"the store {name} stayed locked by another process for more than {BUSY_TIMEOUT_MS / 1000:g} s")
    if isinstance(exc, _RETRY_TRANSACTION):
        err = B24Error("store_locked", f"the store {name} ended a transaction of this command: {_first_line(exc)};"
                       " nothing of that transaction was written",
                       hint="Another session (not b24recover) held locks on the store's tables: run the command"
                            " again; if it keeps happening, find that session in pg_stat_activity.")
        err.retryable = True  # Store.transact runs the body again
        return err
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return B24Error("store_missing", f"the store {name} refused access: {_first_line(exc)}",
                        hint="Grant the role its rights (docs/operations.md, 'Several nodes on one PostgreSQL store').")
    if isinstance(exc, psycopg2.errors.InvalidSchemaName):  # search_path names no existing schema
        return B24Error("store_missing", f"the store {name} has no schema to keep its tables in: {_first_line(exc)}",
                        hint="Create the schema (CREATE SCHEMA ...) or fix the search_path (PGOPTIONS, or the "
                             "role's settings), then run: b24recover init.")
    if isinstance(exc, (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn,
                        psycopg2.errors.UndefinedObject, psycopg2.errors.UndefinedFunction)):
        return B24Error("store_corrupt", f"the store {name} lacks part of its schema: {_first_line(exc)}",
                        hint="Run 'b24recover init', or restore a backup.")
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return B24Error("store_missing", f"cannot reach the PostgreSQL store {name}: {_first_line(exc)}",
                        hint="Check that the server is up, the URL, and PGPASSWORD or ~/.pgpass.")
    return B24Error("store_corrupt", f"the store {name} answered: {_first_line(exc)}",
                    hint="Run 'b24recover init' or restore a backup.")


def is_store_error(exc: BaseException) -> bool:
    """A driver error that means the store failed (exit 8), not a bug (IntegrityError stays a bug)."""
    return isinstance(exc, psycopg2.Error) and not isinstance(exc, psycopg2.IntegrityError)


# ---- one placeholder style ---------------------------------------------------------------------

_SQL_CACHE: dict[tuple[str, bool], str] = {}
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _pg_sql(sql: str, named: bool) -> str:
    """The store's SQL uses sqlite3's `?` (or `:name` with a dict); psycopg2 wants `%s` / `%(name)s`."""
    key = (sql, named)
    out = _SQL_CACHE.get(key)
    if out is None:
        out = sql.replace("%", "%%")
        out = _NAMED.sub(r"%(\1)s", out) if named else out.replace("?", "%s")
        _SQL_CACHE[key] = out
    return out


class Row(list):
    """A row by index and by name, like sqlite3.Row (psycopg2.extras' DictRow costs ~10 ms of
    imports, logging among them, on every start)."""

    __slots__ = ("_index",)

    def __init__(self, values, index: dict):
        super().__init__(values)
        self._index = index

    def __getitem__(self, key):
        return super().__getitem__(self._index[key] if isinstance(key, str) else key)

    def keys(self):
        return list(self._index)


class Cursor(psycopg2.extensions.cursor):
    def _names(self) -> dict:
        return {d[0]: i for i, d in enumerate(self.description or ())}

    def fetchone(self):
        row = super().fetchone()
        return None if row is None else Row(row, self._names())

    def fetchall(self):
        names = self._names()
        return [Row(r, names) for r in super().fetchall()]

    def __iter__(self):
        names = self._names()
        while (row := super().fetchone()) is not None:
            yield Row(row, names)


def _without_nul(params):
    def clean(v):
        return v.replace("\x00", "") if isinstance(v, str) else v

    if isinstance(params, dict):
        return {k: clean(v) for k, v in params.items()}
    return tuple(clean(v) for v in params)


class Connection:
    """What the store modules call `conn`: the sqlite3.Connection methods they use, on psycopg2."""

    engine = "postgresql"

    def __init__(self, raw, name: str):
        self.raw, self.name = raw, name

    def execute(self, sql: str, params=()):
        """A cursor whose rows work by index and by name, like sqlite3.Row."""
        named = isinstance(params, dict)
        cur = self.raw.cursor(cursor_factory=Cursor)
        try:
            cur.execute(_pg_sql(sql, named), params if named else tuple(params))
        except ValueError as exc:  # psycopg2 refuses NUL in a string before sending it
            if "NUL" not in str(exc):
                raise
            if not sql.lstrip().upper().startswith("SELECT"):
                raise B24Error("invalid_input", "a value holds a NUL byte, which the store does not keep") from None
            # No stored text holds a NUL (PostgreSQL cannot keep one), so nothing matches: the
            # same rows as SQLite answers, with the query's own columns.
            return self.execute(f"SELECT * FROM ({sql}) AS never WHERE false", _without_nul(params))
        except psycopg2.IntegrityError:
            raise
        except psycopg2.Error as exc:
            raise translate(exc, self.name) from None
        return cur

    def executemany(self, sql: str, rows):
        import psycopg2.extras  # only `user import` batches rows this way

        cur = self.raw.cursor()
        try:
            psycopg2.extras.execute_batch(cur, _pg_sql(sql, False), [tuple(r) for r in rows], page_size=1000)
        except psycopg2.IntegrityError:
            raise
        except psycopg2.Error as exc:
            raise translate(exc, self.name) from None
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE

    def rollback_quietly(self) -> None:
        """End a failed transaction; a connection already lost has nothing to roll back."""
        try:
            if not self.raw.closed and self.in_transaction:
                self.raw.cursor().execute("ROLLBACK")
        except psycopg2.Error:
            pass

    def close(self) -> None:
        self.raw.close()


class Store(AfterCommit):
    """The PostgreSQL store: same methods as store.db.Store."""

    engine = "postgresql"
    # A process waiting in write() is queued on the advisory lock and gets it as soon as the
    # holder commits, before the holder's next request: a long job needs no pauses to let it in.
    lock_queues_waiters = True

    def __init__(self, conn: Connection, path: StoreURL):
        self.conn, self.path = conn, path
        self._on_commit: list = []

    @contextmanager
    def write(self):
        """One write transaction holding the store-wide write lock (the BEGIN IMMEDIATE of PostgreSQL).

        Waiting for the lock longer than the busy timeout ends in store_locked, as on SQLite."""
        conn = self.conn
        for attempt in range(1, TRANSACTION_TRIES + 1):
            try:
                cur = conn.raw.cursor()
                # One round trip: PostgreSQL runs both statements of one query string in order;
                # READ COMMITTED whatever the server's default (no serialization failures).
                cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(%s)", (STORE_LOCK,))
                break
            except _RETRY_TRANSACTION as exc:
                conn.rollback_quietly()
                if attempt == TRANSACTION_TRIES:
                    raise translate(exc, self.path) from None
                time.sleep(0.02 * attempt)
            except psycopg2.Error as exc:
                conn.rollback_quietly()
                raise translate(exc, self.path) from None
        try:
            yield conn
        except BaseException:
            self._forget_commit_calls()
            conn.rollback_quietly()
            raise
        else:
            try:
                conn.raw.cursor().execute("COMMIT")
            except psycopg2.Error as exc:
                self._forget_commit_calls()
                conn.rollback_quietly()
                raise translate(exc, self.path) from None
            self._after_commit()

    def transact(self, body, tries: int = TRANSACTION_TRIES):
        """Run body(conn) in write(), again from the start after a serialization failure or a
        deadlock (only a foreign session holding row locks can cause one: b24recover's writers
        all queue on the store lock first)."""
        for attempt in range(1, tries + 1):
            try:
                with self.write() as conn:
                    return body(conn)
            except B24Error as exc:
                if not getattr(exc, "retryable", False) or attempt == tries:
                    raise
                time.sleep(0.02 * attempt)

    def one(self, sql: str, params=()):
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params=()):
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.conn.close()


def connect(url: StoreURL) -> Connection:
    """Connect in autocommit (explicit BEGIN/COMMIT in write()); password from PGPASSWORD/~/.pgpass."""
    options = " ".join(filter(None, [os.environ.get("PGOPTIONS", ""), f"-c lock_timeout={BUSY_TIMEOUT_MS}"]))
    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            raw = psycopg2.connect(**url.params, connect_timeout=CONNECT_TIMEOUT_S, options=options,
                                   application_name="b24recover")
            break
        except psycopg2.OperationalError as exc:
            if getattr(exc, "pgcode", None) in _RETRY_CONNECT or "too many clients" in str(exc):
                if attempt < CONNECT_TRIES:
                    time.sleep(0.1 * 2 ** attempt)
                    continue
            cause = _first_line(exc)
            if "does not exist" in cause and "database" in cause:
                raise B24Error("store_missing", f"the PostgreSQL store {url}: {cause}",
                               hint=f"Create it first (createdb -h {url.host} {url.dbname}), then run: b24recover init.") from None
            raise B24Error("store_missing", f"cannot reach the PostgreSQL store {url}: {cause}",
                           hint="Check that the server is up, the URL, and PGPASSWORD or ~/.pgpass.") from None
    raw.autocommit = True
    return Connection(raw, str(url))


# ---- schema version and migrations -----------------------------------------------------------

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS b24recover_schema (
    number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""


def _version(conn: Connection) -> int:
    try:
        cur = conn.raw.cursor()
        cur.execute("SELECT coalesce(max(number), 0) FROM b24recover_schema")
        return cur.fetchone()[0]
    except psycopg2.errors.UndefinedTable:
        return 0
    except psycopg2.Error as exc:
        raise translate(exc, conn.name) from None


def open_store(url: StoreURL) -> Store:
    """Open an initialised store at the schema this tool knows, or explain why not (one round trip)."""
    from .schema import SCHEMA_VERSION

    conn = connect(url)
    version = _version(conn)
    if version == 0:
        conn.close()
        raise B24Error("store_missing", f"{url} is not an initialised b24recover store")
    if version > SCHEMA_VERSION:
        conn.close()
        raise B24Error("store_too_new",
                       f"the store {url} has schema version {version}; this b24recover knows up to {SCHEMA_VERSION}")
    if version < SCHEMA_VERSION:
        conn.close()
        raise B24Error("store_outdated", f"the store {url} has schema version {version}; this b24recover needs {SCHEMA_VERSION}")
    return Store(conn, url)


def init_store(url: StoreURL) -> tuple[Store, list[str]]:
    """Create or upgrade the schema in one transaction under the store lock: nodes racing to
    init queue on it, and whoever comes second finds nothing pending."""
    from .schema import MIGRATIONS, SCHEMA_VERSION, postgresql_sql

    store = Store(connect(url), url)
    applied: list[str] = []
    with store.write() as conn:
        cur = conn.raw.cursor()
        try:
            cur.execute(_VERSION_TABLE)
        except psycopg2.Error as exc:
            raise translate(exc, url) from None
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise B24Error("store_too_new",
                           f"the store {url} has schema version {version}; this b24recover knows up to {SCHEMA_VERSION}")
        for number, (name, sql) in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            for statement in postgresql_sql(name, sql):
                try:
                    cur.execute(statement)
                except psycopg2.Error as exc:
                    raise B24Error("store_corrupt", f"migration {name} failed on {url}: {_first_line(exc)}",
                                   hint="Check the role's rights (CREATE on the schema) and the server log.") from None
            cur.execute("INSERT INTO b24recover_schema (number, name) VALUES (%s, %s)", (number, name))
            applied.append(name)
        if applied:
            _sync_identities(cur)
    return store, applied


def _sync_identities(cur) -> None:
    """Identity sequences after rows copied with explicit ids (a table rebuilt by a migration):
    the next generated id continues after the highest one."""
    cur.execute("SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND is_identity = 'YES'")
    for table, column in cur.fetchall():
        cur.execute(f'SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max("{column}"), 0) + 1, false)'
                    f' FROM "{table}"', (f'"{table}"', column))
