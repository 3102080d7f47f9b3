"""Connection set-up and the one transaction helper (SPEC §5)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from ..errors import B24Error
from ..private_files import check as check_private
from .commit_hooks import AfterCommit
from .schema import SCHEMA_VERSION

BUSY_TIMEOUT_MS = int(os.environ.get("B24RECOVER_BUSY_TIMEOUT_MS", "10000"))


def _create_private(path: Path) -> None:
    """Create an empty file readable by its owner only; SQLite gives -wal/-shm the same mode."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def check_store_files(path: Path, *, tighten: bool = False, suffixes=("", "-wal", "-shm")) -> None:
    """The store and its -wal/-shm (SQLite gives new ones the store's mode, and keeps using an
    existing one) must be the caller's own private regular files: never a symbolic link, another
    user's file, or readable by others."""
    for suffix in suffixes:
        check_private(Path(str(path) + suffix), "the store" if not suffix else f"the store's {suffix} file",
                      "store_unsafe", tighten=tighten)


def translate(exc: sqlite3.Error, path) -> B24Error:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return B24Error(
            "store_locked",
            f"the store {path} stayed locked by another process for more than {BUSY_TIMEOUT_MS / 1000:g} s",
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return B24Error("store_corrupt", f"the store {path} is damaged: {exc}")
    if "unable to open" in text or "readonly" in text or "read-only" in text:
        return B24Error("store_missing", f"cannot open the store {path}: {exc}", hint="Check the path and its permissions.")
    return B24Error("store_corrupt", f"the store {path} answered: {exc}", hint="Run 'b24recover init' or restore a backup.")


class Connection(sqlite3.Connection):
    """sqlite3's connection, naming its engine for the few store queries that differ (store/pg.py)."""

    engine = "sqlite"


def engine_of(conn) -> str:
    return getattr(conn, "engine", "sqlite")


def is_store_error(exc: BaseException) -> bool:
    """An exception from the store's driver that means the store failed (exit 8), not a bug."""
    import sys

    if type(exc) in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return True
    pg = sys.modules.get("b24recover.store.pg")  # loaded only for a PostgreSQL store
    return pg is not None and pg.is_store_error(exc)


def translate_any(exc: BaseException, db) -> B24Error:
    from .url import safe_name

    if isinstance(exc, sqlite3.Error):
        return translate(exc, safe_name(db))
    from .pg import translate as pg_translate

    return pg_translate(exc, safe_name(db))


class Store(AfterCommit):
    """The SQLite store. store/pg.py has the same interface for PostgreSQL."""

    engine = "sqlite"
    # A writer waiting for SQLite's lock sleeps in its busy handler and retries: a long job
    # must leave the lock free now and then (services/audit.py Pacer). store/pg.py: True.
    lock_queues_waiters = False

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self._on_commit: list = []

    @contextmanager
    def write(self):
        """One write transaction, begun IMMEDIATE so the write lock is taken up front."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise translate(exc, self.path) from None
        try:
            yield self.conn
        except BaseException:
            self._forget_commit_calls()
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._forget_commit_calls()
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise translate(exc, self.path) from None
            self._after_commit()

    def one(self, sql: str, params=()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def transact(self, body, tries: int = 1):
        """Run body(conn) in write(). SQLite's single lock never asks for a retry (see store/pg.py)."""
        with self.write() as conn:
            return body(conn)

    def close(self) -> None:
        self.conn.close()


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=Connection)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    return _configure(_raw_connect(path))


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_store(path: str | Path) -> Store:
    """Open an initialised store at the schema this tool knows, or explain why not."""
    if not isinstance(path, Path):  # a str from a caller, or a StoreURL
        from .url import location

        path = location(path)
    if getattr(path, "engine", None) == "postgresql":
        from . import pg

        return pg.open_store(path)
    if not os.path.lexists(path):
        raise B24Error("store_missing", f"no store at {path}")
    check_store_files(path, suffixes=("-wal", "-shm"))  # before SQLite opens (and reuses) them
    try:
        # Read the version before changing anything: a file that is not our store stays untouched.
        conn = _raw_connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if 0 < version <= SCHEMA_VERSION:
            try:
                check_store_files(path, suffixes=("",))  # a store of ours: before anything is written
            except B24Error:
                conn.close()
                raise
            _configure(conn)
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    if version == 0:
        conn.close()
        raise B24Error("store_missing", f"{path} is not an initialised b24recover store")
    if version > SCHEMA_VERSION:
        conn.close()
        raise B24Error(
            "store_too_new",
            f"the store {path} has schema version {version}; this b24recover knows up to {SCHEMA_VERSION}",
        )
    if version < SCHEMA_VERSION:
        conn.close()
        raise B24Error("store_outdated", f"the store {path} has schema version {version}; this b24recover needs {SCHEMA_VERSION}")
    return Store(conn, path)


def init_store(path: str | Path) -> tuple[Store, list[str]]:
    """Create or upgrade the store; safe when several processes run it at once."""
    if not isinstance(path, Path):  # a str from a caller, or a StoreURL
        from .url import location

        path = location(path)
    if getattr(path, "engine", None) == "postgresql":
        from . import pg

        return pg.init_store(path)
    if path.parent and not path.parent.exists():
        raise B24Error("store_missing", f"the folder {path.parent} does not exist",
                       hint=f"Create it first (mkdir -p {path.parent}), then run: b24recover init.")
    if not os.path.lexists(path):
        _create_private(path)
    check_store_files(path, tighten=True)
    try:
        conn = _connect(path)
        store = Store(conn, path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise B24Error(
                "store_too_new",
                f"the store {path} has schema version {version}; this b24recover knows up to {SCHEMA_VERSION}",
            )
        applied: list[str] = []
        if version < SCHEMA_VERSION:
            from .schema import apply_migrations

            # Everyone who races to migrate queues on the write lock; whoever comes second
            # finds nothing pending. Foreign keys are off meanwhile (a table rebuild's DROP TABLE
            # would run the children's ON DELETE CASCADE; the pragma cannot change inside a
            # transaction) and are checked before the commit.
            conn.execute("PRAGMA foreign_keys = OFF")
            try:
                with store.write():
                    applied = apply_migrations(conn)
                    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise B24Error("store_corrupt", f"the upgrade of {path} would break {len(broken)} "
                                       f"reference(s) (first in table {broken[0][0]}); nothing was changed")
            finally:
                conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    return store, applied
