"""Batch queries of `user import`: a few IN (...) lookups and multi-row INSERTs per batch instead
of one statement per row, and the TEMP table of identifiers seen in earlier batches."""

from __future__ import annotations

IN_CHUNK = 900  # values per IN (...) list, under SQLite's oldest variable limit

# Where each identifier lives; the only names ever put into the SQL text.
KEY_TABLES = {"login_key": "users", "login_skeleton": "users", "email_key": "users", "phone": "users",
              "portal_id": "users", "address_key": "pending_addresses"}

INSERT_COLUMNS = ("login", "login_key", "email", "email_key", "phone", "name", "last_name", "lang",
                  "blocked", "password_hash", "created_at", "updated_at", "password_changed_at",
                  "external", "profile_phone", "portal_id", "login_skeleton")
_ROWS_PER_INSERT = 32766 // len(INSERT_COLUMNS) // 4


def chunks(values: list, size: int = IN_CHUNK):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def keys_in_use(conn, column: str, values: list) -> set:
    """The values already stored in `column` (a key of KEY_TABLES)."""
    table = KEY_TABLES[column]
    found = set()
    for chunk in chunks(values):
        sql = f"SELECT {column} FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))})"
        found.update(r[0] for r in conn.execute(sql, chunk))
    return found


def socials_in_use(conn, pairs: list) -> set:
    """The (provider, subject) pairs already attached to an account."""
    found = set()
    for chunk in chunks(pairs, IN_CHUNK // 2):
        sql = ("SELECT provider, subject FROM social_identities WHERE (provider, subject) IN (VALUES "
               + ",".join(["(?,?)"] * len(chunk)) + ")")
        found.update((r[0], r[1]) for r in conn.execute(sql, [x for pair in chunk for x in pair]))
    return found


def insert_many(conn, rows: list[tuple], returning: bool) -> dict[str, int]:
    """Insert accounts given as tuples in INSERT_COLUMNS order, with one multi-row INSERT per
    chunk: the full-text trigger then costs a fraction of one insert per statement. Returns
    (login_key, external) -> id when asked."""
    ids_by_key: dict[tuple, int] = {}
    one = "(" + ",".join("?" * len(INSERT_COLUMNS)) + ")"
    width = len(INSERT_COLUMNS)
    # login_skeleton, the last column, may be left off: NULL, which `init` fills in.
    rows = [row if len(row) == width else (*row, None) for row in rows]
    for chunk in chunks(rows, _ROWS_PER_INSERT):
        sql = f"INSERT INTO users ({', '.join(INSERT_COLUMNS)}) VALUES " + ",".join([one] * len(chunk))
        if returning:
            sql += " RETURNING id, login_key, external"
        cur = conn.execute(sql, [x for row in chunk for x in row])
        if returning:
            ids_by_key.update(((key, external), user_id) for user_id, key, external in cur.fetchall())
    return ids_by_key


# ---- identifiers seen in earlier batches --------------------------------------------------------
#
# A TEMP table of 64-bit key hashes -> line: it lives on disk behind a small page cache, so
# millions of rows do not grow the process, and writing it never takes the store's write lock.

def _pg(conn) -> bool:
    return getattr(conn, "engine", "sqlite") == "postgresql"


def _seen(conn) -> str:
    """The session's own temporary table, by the name each engine gives its temp schema."""
    return "pg_temp.import_seen" if _pg(conn) else "temp.import_seen"


def open_seen(conn) -> None:
    kind = "BIGINT" if _pg(conn) else "INTEGER"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS import_seen (hash {kind} PRIMARY KEY, line {kind} NOT NULL)")
    conn.execute(f"DELETE FROM {_seen(conn)}")
    if not _pg(conn):
        conn.execute("PRAGMA temp.cache_size = -8192")


def close_seen(conn) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {_seen(conn)}")


def remember_seen(conn, pairs) -> None:
    """Keep (hash, line) pairs; a hash already kept keeps its first line."""
    rows = sorted(pairs)  # in key order: neighbouring inserts touch the same pages
    conn.execute("BEGIN")  # the temp database alone: the store's lock is not taken
    try:
        conn.executemany(f"INSERT INTO {_seen(conn)} (hash, line) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING", rows)
    finally:
        conn.execute("COMMIT")


def seen_lines(conn, hashes: list[int]) -> dict[int, int]:
    """hash -> line for the hashes kept by remember_seen."""
    found: dict[int, int] = {}
    for chunk in chunks(hashes):
        sql = f"SELECT hash, line FROM {_seen(conn)} WHERE hash IN ({','.join('?' * len(chunk))})"
        found.update(conn.execute(sql, chunk).fetchall())
    return found


class ImportTurn:
    """Concurrent imports of one store take turns: an advisory lock on `<store>.import-lock`.

    SQLite has no queue for its write lock. With several imports each re-taking it as soon as
    it is free, a short command waiting in its busy handler competes with all of them at every
    release and can lose for many seconds. Holding this lock across a writing window and the
    pause after it, one import writes at a time, and the pause is free for everyone else.


    On PostgreSQL the store lock's waiters already queue in order, and there is no local file
    to lock on every node: no turns are taken there.
    """

    def __init__(self, store_path):
        import os

        self.fd = None
        if getattr(store_path, "engine", None) != "postgresql":
            self.fd = os.open(f"{store_path}.import-lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self.held = False

    def take(self) -> None:
        import fcntl

        if not self.held and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.held = True

    def give(self) -> None:
        import fcntl

        if self.held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        import os

        self.give()
        if self.fd is not None:
            os.close(self.fd)


def data_version(conn) -> int:
    """Changes whenever another connection commits: how an import sees that a waiter got in.
    On PostgreSQL never: the store lock's waiters queue in order, so a waiter gets in after the
    current part whether or not the import pauses (and the snapshot's xmax, see purge.py, moves
    with every writer of the whole server, which would make the import pause after every part)."""
    if _pg(conn):
        return 0
    return conn.execute("PRAGMA data_version").fetchone()[0]


# ---- the page cache -----------------------------------------------------------------------------

def cache_size(conn) -> int:
    if _pg(conn):
        return 0  # the server's shared buffers, not the client's to size
    return conn.execute("PRAGMA main.cache_size").fetchone()[0]


def set_cache_size(conn, size: int) -> None:
    """PRAGMA cache_size semantics: pages when positive, KiB when negative (SQLite only)."""
    if not _pg(conn):
        conn.execute(f"PRAGMA main.cache_size = {int(size)}")
