"""Named locks a process holds across transactions (the import turn, one portal sync at a time),
released when the process ends, however it ends.

SQLite: an exclusive `flock` on a 0600 file beside the store (`<store><suffix>`). PostgreSQL
(no local file, and several nodes): a session-level advisory lock on the store's connection,
which every node sees and the server drops with the session.
"""

from __future__ import annotations

import os

# The advisory lock key of each name on PostgreSQL (store/pg.py's write lock is b"b24rcvr1").
_PG_KEYS = {".import-lock": b"b24rimp1", ".sync.lock": b"b24rsyn1"}


def pg_key(suffix: str) -> int:
    return int.from_bytes(_PG_KEYS[suffix], "big", signed=True)


class NamedLock:
    def __init__(self, store, suffix: str):
        self.held = False
        if store.engine == "postgresql":
            self.conn, self.key, self.fd = store.conn, pg_key(suffix), None
        else:
            self.conn = None
            self.fd = os.open(f"{store.path}{suffix}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock (waiting as long as it takes), or with wait=False only if it is free."""
        if self.held:
            return True
        if self.conn is None:
            import fcntl

            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return False
            self.held = True
        elif not wait:
            self.held = bool(self.conn.execute("SELECT pg_try_advisory_lock(?)", (self.key,)).fetchone()[0])
        else:
            # As flock: no time limit (the connection's lock_timeout is for the store's write lock).
            # A session lock taken in a transaction outlives its COMMIT; SET LOCAL does not.
            self.conn.execute("BEGIN")
            try:
                self.conn.execute("SET LOCAL lock_timeout = 0")
                self.conn.execute("SELECT pg_advisory_lock(?)", (self.key,))
            except BaseException:
                self.conn.rollback_quietly()
                raise
            self.conn.execute("COMMIT")
            self.held = True
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.conn is None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
        else:
            self.conn.execute("SELECT pg_advisory_unlock(?)", (self.key,))

    def close(self) -> None:
        self.release()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
