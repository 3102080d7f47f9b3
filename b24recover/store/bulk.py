"""Bulk jobs (`bulk reset`): one row per input, one item per account handled."""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import B24Error


def job_by_fingerprint(conn, digest: str):
    return conn.execute("SELECT id, out_dev, out_ino FROM bulk_jobs WHERE fingerprint = ?", (digest,)).fetchone()


def set_out_file(conn, job_id: int, dev: int, ino: int) -> None:
    """The --out file this job created: the only existing file a resumed run may reopen."""
    conn.execute("UPDATE bulk_jobs SET out_dev = ?, out_ino = ? WHERE id = ?", (dev, ino, job_id))


def delete_job(conn, job_id: int) -> None:
    conn.execute("DELETE FROM bulk_items WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM bulk_jobs WHERE id = ?", (job_id,))


def create_job(conn, digest: str, mode: str, now: int) -> int:
    cur = conn.execute("INSERT INTO bulk_jobs (fingerprint, mode, created_at) VALUES (?, ?, ?) RETURNING id",
                       (digest, mode, now))
    return cur.fetchone()[0]


def finish_job(conn, job_id: int, now: int) -> None:
    conn.execute("UPDATE bulk_jobs SET finished_at = ? WHERE id = ?", (now, job_id))


def item_statuses(conn, job_id: int) -> dict[str, str]:
    """login_key -> status of every item the job has recorded."""
    items = conn.execute("SELECT login_key, status FROM bulk_items WHERE job_id = ?", (job_id,))
    return {r["login_key"]: r["status"] for r in items}


def item_status(conn, job_id: int, key: str) -> str | None:
    row = conn.execute("SELECT status FROM bulk_items WHERE job_id = ? AND login_key = ?", (job_id, key)).fetchone()
    return None if row is None else row["status"]


def mark_item(conn, job_id: int, key: str, status: str, reason: str | None, now: int) -> None:
    conn.execute(
        "INSERT INTO bulk_items (job_id, login_key, status, reason, done_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (job_id, login_key) DO UPDATE SET status = excluded.status,"
        " reason = excluded.reason, done_at = excluded.done_at",
        (job_id, key, status, reason, now),
    )


@contextmanager
def item(conn):
    """One account inside a chunk's transaction, as a savepoint: a B24Error undoes this
    account's writes only; any other exception is left to end the whole transaction."""
    conn.execute("SAVEPOINT bulk_item")
    try:
        yield
    except B24Error:
        conn.execute("ROLLBACK TO bulk_item")
        raise
    finally:
        conn.execute("RELEASE bulk_item")
