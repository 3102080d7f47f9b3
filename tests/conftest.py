"""Shared fixtures: a fresh store under tmp_path, bcrypt cost 4, a fixed clock, and two ways
to run the CLI (in-process with CliRunner, or as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from b24recover.cli.app import app
from b24recover.cli.runtime import Globals
from b24recover.clock import FixedClock

ROOT = Path(__file__).resolve().parent.parent
GOOD_PASSWORD = "correct horse battery staple"


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def error(self) -> dict:
        return json.loads(self.stderr.strip().splitlines()[-1])["error"]


@pytest.fixture
def clock():
    return FixedClock(1_790_000_000)


@pytest.fixture
def config_path(tmp_path) -> Path:
    path = tmp_path / "b24recover.toml"
    path.write_text(
        'portal_url = "https://portal.example.com"\n'
        'default_country = "RU"\n'
        "[hashing]\nbcrypt_rounds = 4\n",
        encoding="utf-8",
    )
    return path


# ---- the engine under test ----------------------------------------------------------------------
#
# Every test that uses `db_path` (and so `cli`, `store`, `proc`) runs once per engine, except the
# SQLite-only files and tests below (each with the reason): on SQLite with a file under tmp_path,
# on PostgreSQL with a URL whose database is shared by the session and a schema of its own per
# test (PGOPTIONS puts it first on the search_path; creating and dropping a schema takes
# milliseconds, a database ~0.6 s). Without a server on 127.0.0.1 the PostgreSQL
# runs skip with a one-line reason, and under CI=true they fail instead.


# Files about SQLite's own behaviour, and why (their PostgreSQL counterparts named).
SQLITE_ONLY = {
    "test_purge_concurrency": "SQLite busy-timeout and WAL behaviour (PostgreSQL: test_pgstore_race)",
}

# Store-level files that build their stores without `db_path` run on both engines by their own
# fixtures (pg_server's schema per store): test_fast_path (one module-wide store per engine),
# test_token_state_machine (a store per hypothesis example; fewer examples on PostgreSQL).

# Single tests of files that otherwise run on both engines.
SQLITE_ONLY_TESTS = {
    "test_policy_show_text_without_a_store": "checks that no store file appears",
    "test_secrets_never_reach_the_database": "greps the store's files",
    "test_policy_refusal_is_audited_and_keeps_the_control_string": "json_extract in its own query",
    "test_kill_9_leaves_the_store_consistent_and_a_rerun_completes": "PRAGMA integrity_check",
    "test_sigkill_leaves_whole_batches_and_a_rerun_completes": "reads the file read-only; PRAGMA integrity_check",
    "test_seen_table_keeps_the_first_line_of_each_hash": "looks in temp.sqlite_master",
    "test_cache_size_round_trip": "PRAGMA cache_size (PostgreSQL has none per client)",
    "test_bulk_session_clears_set_null_links_itself_with_foreign_keys_off":
        "SQLite's foreign_keys PRAGMA (PostgreSQL enforces its keys: test_a_link_from_a_table_whose_name_needs_quoting_is_cleared)",
    "test_purge_restores_the_connection_settings": "PRAGMAs the purge changes (PostgreSQL changes none)",
    "test_store_missing_when_the_file_is_empty": "an empty file (PostgreSQL: an empty schema, test_pgstore)",
    "test_init_in_a_missing_folder": "the store file's folder",
    "test_random_bytes_are_a_corrupt_store": "damages the store file",
    "test_a_damaged_page_is_a_corrupt_store": "damages a page of the store file",
    "test_wal_and_synchronous_full": "SQLite's journal_mode, synchronous and busy_timeout PRAGMAs",
    # The store file's own mode, owner and symlink (a PostgreSQL store has no file; its key file
    # and outbox are checked by the other tests of test_safety_files on both engines).
    "test_a_store_readable_by_others_is_refused_and_init_tightens_it": "modes of the SQLite file, -wal, -shm",
    "test_a_symlinked_store_is_refused_also_by_init": "a symlinked SQLite file",
    "test_a_store_of_another_user_is_refused": "the owner of the SQLite file",
}

PG_SERVER = os.environ.get("B24RECOVER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_report_header(config):
    return ["SQLite-only test files: " + ", ".join(sorted(SQLITE_ONLY)),
            "SQLite-only tests: " + (", ".join(sorted(SQLITE_ONLY_TESTS)) or "none")]


def pytest_generate_tests(metafunc):
    if "db_path" in metafunc.fixturenames:
        module = metafunc.module.__name__.rpartition(".")[2]
        only = module in SQLITE_ONLY or metafunc.function.__name__ in SQLITE_ONLY_TESTS
        engines = ["sqlite"] if only else ["sqlite", "postgresql"]
        metafunc.parametrize("engine", engines, indirect=True)


@pytest.fixture
def engine(request) -> str:
    return getattr(request, "param", "sqlite")


class _PgServer:
    """The session's test database on the PostgreSQL server, and one schema per test."""

    def __init__(self):
        import psycopg2
        from b24recover.store.url import StoreURL

        admin = StoreURL(PG_SERVER)
        self.dbname = f"b24recover_test_{os.getpid()}"
        conn = psycopg2.connect(**admin.params, connect_timeout=3)
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{self.dbname}"')
        conn.cursor().execute(f'CREATE DATABASE "{self.dbname}"')
        conn.close()
        self.admin, self.params = admin, {**admin.params, "dbname": self.dbname}
        self.conn = psycopg2.connect(**self.params)
        self.conn.autocommit = True
        # Extensions are per database: installed once in public, found through the search_path.
        self.conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public")
        self.url = f"postgresql://{admin.params['user']}@{admin.params['host']}:{admin.params.get('port', 5432)}/{self.dbname}"
        self.count = 0

    def new_schema(self) -> str:
        self.count += 1
        name = f"t{self.count}"
        self.conn.cursor().execute(f"CREATE SCHEMA {name}")
        return name

    def drop_schema(self, name: str) -> None:
        self.conn.cursor().execute(f"DROP SCHEMA {name} CASCADE")

    def close(self) -> None:
        import psycopg2

        self.conn.close()
        conn = psycopg2.connect(**self.admin.params)
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        conn.close()


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server, or a skip (a failure under CI=true) when none answers."""
    try:
        server = _PgServer()
    except Exception as exc:  # psycopg2.OperationalError, or no driver at all
        reason = f"no PostgreSQL server at {PG_SERVER}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: a skipped server test is a failure)")
        pytest.skip(reason)
    yield server
    server.close()


@pytest.fixture
def pg_url(request, monkeypatch):
    """A PostgreSQL store URL naming an empty schema of its own (a fresh store for one test)."""
    server = request.getfixturevalue("pg_server")
    schema = server.new_schema()
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={schema},public")
    yield PgTestURL(server.url, request.getfixturevalue("config_path"))
    server.drop_schema(schema)


class PgTestURL(str):
    """The URL of a PostgreSQL test store; `local_base` is what its key file and outbox are named
    after (beside the config file, see config.Settings.local_base)."""

    def __new__(cls, url: str, config_path: Path):
        obj = super().__new__(cls, url)
        obj.local_base = str(config_path.parent / f"b24recover-{url.rpartition('/')[2]}")
        return obj


@pytest.fixture
def db_path(engine, tmp_path, request):
    """The store the test works on: a SQLite file path, or a PostgreSQL URL (see `engine`)."""
    if engine == "postgresql":
        return request.getfixturevalue("pg_url")
    return tmp_path / "b24.db"


@pytest.fixture
def cli(db_path, config_path, clock, monkeypatch):
    """Run the CLI in-process: cli("user", "add", ..., input="...") -> Run."""
    monkeypatch.delenv("B24RECOVER_SECRET", raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None) -> Run:
        argv = ["--db", str(db_path), "--config", str(config_path), *args]
        result = runner.invoke(app, argv, input=input, env=env,
                               obj=Globals(db=str(db_path), config=str(config_path), actor=None, clock=clock))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def store(cli):
    """An initialised store."""
    assert cli("init").exit_code == 0
    return cli


@pytest.fixture
def proc(db_path, config_path):
    """Run the CLI as a real subprocess, exactly as an operator or a portal would."""

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 60) -> Run:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
        full_env.update(env or {})
        argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), *args]
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(argv, input=data, capture_output=True, env=full_env, timeout=timeout, cwd=ROOT)
        return Run(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))

    return run


def add_user(cli, login: str, *extra: str, password: str = GOOD_PASSWORD) -> Run:
    result = cli("user", "add", login, *extra, "--password-stdin", input=password + "\n")
    assert result.exit_code == 0, result.stderr
    return result


class _TestRow(tuple):
    """A row equal to a tuple of its values, readable by name too (as tests use sqlite3 rows)."""

    def __new__(cls, row):
        obj = super().__new__(cls, tuple(row))
        obj._names = {k: i for i, k in enumerate(row.keys())}
        return obj

    def __getitem__(self, key):
        return super().__getitem__(self._names[key] if isinstance(key, str) else key)

    def keys(self):
        return list(self._names)


class _PgTestCursor:
    def __init__(self, cur):
        self._cur, self.rowcount = cur, cur.rowcount

    def fetchone(self):
        row = self._cur.fetchone() if self._cur.description else None
        return None if row is None else _TestRow(row)

    def fetchall(self):
        return [_TestRow(r) for r in self._cur.fetchall()] if self._cur.description else []

    def __iter__(self):
        return iter(self.fetchall())


class _PgTestConn:
    """What the tests use of a sqlite3 connection, on the PostgreSQL test store (the store's own
    connection wrapper: `?` placeholders, rows by name and index), in autocommit."""

    row_factory = None  # tests set sqlite3.Row; rows here already work by name

    def __init__(self, url: str):
        from b24recover.store import pg
        from b24recover.store.url import StoreURL

        self._conn = pg.connect(StoreURL(str(url)))

    def execute(self, sql, params=()):
        return _PgTestCursor(self._conn.execute(sql, params))

    def executemany(self, sql, rows):
        return self._conn.executemany(sql, rows)

    def commit(self):
        pass

    def close(self):
        self._conn.close()

    def iterdump(self):
        """Every row of every table as text, for "this secret is nowhere in the store" checks."""
        tables = [r[0] for r in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        for table in tables:
            for row in self.execute(f'SELECT * FROM "{table}"'):
                yield f"{table}: {list(row)!r}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass  # as sqlite3: a `with` block ends a transaction, not the connection


def connect_db(db_path, rows_by_name: bool = False, autocommit: bool = False):
    """A connection to the test store behind the tool's back: sqlite3, or for a PostgreSQL URL
    the same calls (`?` placeholders, rows equal to tuples and readable by name) on PostgreSQL
    (always in autocommit; `autocommit` gives SQLite's isolation_level=None)."""
    import sqlite3

    if str(db_path).startswith("postgresql://"):
        return _PgTestConn(db_path)
    conn = sqlite3.connect(db_path, **({"isolation_level": None} if autocommit else {}))
    if rows_by_name:
        conn.row_factory = sqlite3.Row
    return conn


def hold_write_lock(db_path):
    """A connection holding the store's write lock (as a writing b24recover would) until it
    executes ROLLBACK: BEGIN IMMEDIATE on SQLite, the store lock on PostgreSQL (store/pg.py)."""
    conn = connect_db(db_path, autocommit=True)
    if isinstance(conn, _PgTestConn):
        from b24recover.store.pg import STORE_LOCK

        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (STORE_LOCK,))
    else:
        conn.execute("BEGIN IMMEDIATE")
    return conn
