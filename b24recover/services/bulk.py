"""`bulk reset`: many accounts at once, resumable after a crash.

Input: logins one per line (blank lines and `#` comments skipped), or a CSV file whose header
has a `login` column (any letter case, so a Bitrix `b_user` export with LOGIN works). A header
that is exactly `login` is read as a header, not as an account called "login".

One job per input: its fingerprint is the SHA-256 of the mode and the sorted login keys, and
every account handled is recorded in `bulk_items` in the same transaction as the change itself.
Running the same input again therefore resumes the job: accounts already done are skipped
("done in an earlier run"), the failed and skipped ones are tried again. `restart=True` forgets
the job and starts over (a deliberate second reset of the same list).

Modes:
- control-string: each account gets a control string by email (or SMS when it has only a phone),
  queued in the transaction and delivered after it; the throttle applies unless `force`. Blocked
  accounts are skipped (they get no control strings).
- temporary-password: a random policy-compliant password per account, `must_change_password`
  set. Passwords are hashed in parallel by a thread pool (pyca/bcrypt releases the GIL), a chunk
  at a time; once every hash of the chunk is done, and before the next chunk goes to the pool,
  the chunk is stored in one short transaction, so no transaction ever waits for bcrypt.
  `login,password` lines go only into the `--out` file: created new (O_EXCL, 0600, never
  through a symlink); an existing file is refused unless it is the very file this job created
  (its device and inode are kept in the job), so an interrupted run can be resumed into it. The
  "password changed" notices are queued in that transaction and delivered while the next
  chunk hashes; if the run dies first they stay queued for `outbox send`.

Crash order in temporary-password mode, per chunk: the lines are appended to the --out file and
fsync'ed inside the transaction, just before its commit. Killed before the commit, the file
holds lines whose passwords were never stored; the re-run sees those accounts as not done,
draws new passwords and appends new lines. So in the --out file **the last line for a login is
the password in force**; earlier lines for the same login are void. Killed after the commit,
nothing is lost: the lines are already on disk. Re-run with the same --out file.

Exit code of a run (chosen by the CLI): 0 when nothing failed, otherwise the exit code of the
first failed row in input order (e.g. 3 for an unknown login, 5 for a malformed row, 7 when the
throttle refused, 9 when a control string was issued but its message could not be delivered).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ..errors import B24Error
from ..store import bulk as bulk_store
from ..store import users as user_store
from . import identifiers as ids
from . import writeback
from . import notices
from . import outbox
from .bitrix import external_error
from .context import Ctx
from .credentials import prepare_password, store_password

MODES = ("control-string", "temporary-password")
CHUNK = 64
MAX_LINE = 64 * 1024  # longer input lines are reported, not kept in memory
DONE_EARLIER = "done in an earlier run of this job"
DONE_MEANWHILE = "done meanwhile by another run of this job"


@dataclass
class Row:
    line: int
    login: str
    key: str


@dataclass
class Summary:
    mode: str
    job: int | None = None
    resumed: bool = False
    total: int = 0
    done: int = 0
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    notices: dict = field(default_factory=lambda: {"sent": 0, "failed": 0, "other": 0})

    def skip(self, row: Row, reason: str) -> None:
        self.skipped.append({"login": row.login, "line": row.line, "reason": reason})

    def fail(self, login: str, line: int, code: str, reason: str) -> None:
        self.failed.append({"login": login, "line": line, "code": code, "reason": reason})

    def as_dict(self) -> dict:
        by_line = lambda item: item["line"]  # noqa: E731
        return {"mode": self.mode, "job": self.job, "resumed": self.resumed, "total": self.total,
                "done": self.done, "skipped": sorted(self.skipped, key=by_line),
                "failed": sorted(self.failed, key=by_line), "notices": self.notices}

    def delivered(self, ctx: Ctx, message_ids: list[int]) -> None:
        """Deliver "password changed" notices and count how it went. A failed one stays in the
        outbox for `outbox send`; the reset itself stands, so it is no failed row."""
        for message_id in message_ids:
            status = notices.deliver(ctx, message_id)["status"]
            self.notices[status if status in ("sent", "failed") else "other"] += 1


# ---- reading the input ------------------------------------------------------------------------

def _shown(text: str) -> str:
    """A login as it may be echoed back: control characters and undecodable bytes escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:255])


def _lines(stream: BinaryIO) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for every input line; text is None for a line too long to keep.
    Undecodable bytes survive as surrogate escapes so the row can be reported, not crash."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE + 1)
            yield number, None
            continue
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        yield number, raw.decode("utf-8", "surrogateescape").rstrip("\r\n")


def _header_column(text: str) -> int | None:
    """The index of the `login` column when this line is a CSV header, else None."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return None
    names = [f.strip().lower() for f in fields]
    return names.index("login") if "login" in names else None


def _validate(summary: Summary, seen: dict[str, int], number: int, text: str | None) -> Row | None:
    if text is None:
        summary.fail("", number, "invalid_input", f"line {number}: longer than {MAX_LINE} bytes")
        return None
    login = text.strip()
    try:
        if any("\udc80" <= ch <= "\udcff" for ch in login):
            raise B24Error("invalid_input", "the login is not valid UTF-8")
        login = ids.clean_text(login, "the login", allow_empty=False)
    except B24Error as exc:
        summary.fail(_shown(login), number, exc.code, f"line {number}: {exc.message}")
        return None
    row = Row(number, login, ids.login_key(login))
    if row.key in seen:
        summary.skip(row, f"line {number}: the same login as line {seen[row.key]}")
        return None
    seen[row.key] = number
    return row


def _meaningful(text: str | None) -> bool:
    return text is None or bool(text.strip()) and not text.lstrip().startswith("#")


def _csv_field(text: str | None, column: int) -> str | None:
    """The login field of one CSV line. Logins never span lines (no control characters), so
    each line is one record; an unbalanced quote is reported rather than swallowing the rest."""
    if text is None:
        return None
    if text.count('"') % 2:
        raise B24Error("invalid_input", "unbalanced quote")
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise B24Error("invalid_input", f"not a CSV record ({exc})") from None
    return fields[column] if column < len(fields) else ""


def read_logins(stream: BinaryIO, summary: Summary) -> list[Row]:
    """Parse the input line by line; malformed rows go to summary.failed, duplicates to skipped."""
    rows: list[Row] = []
    seen: dict[str, int] = {}
    column = None
    first = True
    for number, text in _lines(stream):
        if not _meaningful(text):
            continue
        if first:
            first = False
            column = _header_column(text) if text is not None else None
            if column is not None:
                continue
        if column is not None:
            try:
                text = _csv_field(text, column)
            except B24Error as exc:
                summary.fail(_shown(text), number, exc.code, f"line {number}: {exc.message}")
                continue
        row = _validate(summary, seen, number, text)
        if row:
            rows.append(row)
    return rows


def fingerprint(mode: str, keys: list[str]) -> str:
    payload = mode + "\n" + "\n".join(sorted(keys))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# ---- the job and its items (bulk_jobs / bulk_items) -------------------------------------------

def _start_job(ctx: Ctx, mode: str, keys: list[str], restart: bool,
               out: str | None) -> tuple[int, bool, dict[str, str], int | None]:
    """The job for this input (created or found), the status of every item already recorded,
    and the --out file opened for appending. The file is opened in the same transaction that
    finds the job and records the file's identity, so two runs of one job agree on it."""
    digest = fingerprint(mode, keys)
    fd = created = None
    try:
        with ctx.store.write() as conn:
            job = bulk_store.job_by_fingerprint(conn, digest)
            recorded = (job["out_dev"], job["out_ino"]) if job is not None and job["out_ino"] is not None else None
            if job is not None and restart:
                bulk_store.delete_job(conn, job["id"])  # starting over, into the same file is fine
                job = None
            if out:
                fd, identity, created = open_out(out, recorded)
            if job is None:
                job_id, resumed, earlier = bulk_store.create_job(conn, digest, mode, ctx.now()), False, {}
            else:
                job_id, resumed, earlier = job["id"], True, bulk_store.item_statuses(conn, job["id"])
            if out and identity != recorded:
                bulk_store.set_out_file(conn, job_id, *identity)
    except BaseException:
        if fd is not None:
            os.close(fd)
            if created:
                os.unlink(out)  # empty, and no job knows it: leave no file that a re-run would refuse
        raise
    return job_id, resumed, earlier, fd


def _mark(ctx: Ctx, conn, job_id: int, key: str, status: str, reason: str | None = None) -> None:
    bulk_store.mark_item(conn, job_id, key, status, reason, ctx.now())


def _done_meanwhile(conn, job_id: int, key: str) -> bool:
    """Checked inside the write transaction: a second run of the same job started at the same
    time may have done this account since we read the job; it must not be done twice."""
    return bulk_store.item_status(conn, job_id, key) == "done"


def _finish_job(ctx: Ctx, summary: Summary, reason: str | None, forced: bool) -> None:
    with ctx.store.write() as conn:
        bulk_store.finish_job(conn, summary.job, ctx.now())
        ctx.audit(conn, "bulk.reset", None, job=summary.job, mode=summary.mode, resumed=summary.resumed,
                  total=summary.total, done=summary.done, skipped=len(summary.skipped),
                  failed=len(summary.failed), forced=forced, reason=reason)


# ---- the --out file ---------------------------------------------------------------------------

def _refuse(path: str, why: str, hint: str | None = None) -> B24Error:
    return B24Error("invalid_input", f"--out {path} {why}; temporary passwords go only into a new file of "
                    "yours (or the one an interrupted run of this same job created)",
                    hint=hint or "Name a new file (it is created 0600), or move the existing one away.")


def open_out(path: str, recorded: tuple[int, int] | None) -> tuple[int, tuple[int, int], bool]:
    """The passwords file, opened for appending: (fd, (device, inode), created).

    Created new: O_CREAT|O_EXCL|O_NOFOLLOW, 0600 whatever the umask. An existing file is refused,
    with one exception: a resumed job may reopen the very file it created (`recorded`, the same
    device and inode), still a regular 0600 file of the caller's; O_NOFOLLOW and a second look
    through the open descriptor close the race between the check and the open."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refuse(path, f"cannot be created ({exc.strerror})") from None
    else:
        try:
            os.fchmod(fd, 0o600)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, (st.st_dev, st.st_ino), True
    try:
        before = os.lstat(path)
    except OSError as exc:
        raise _refuse(path, f"cannot be inspected ({exc.strerror})") from None
    _judge(path, before, recorded)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refuse(path, f"cannot be opened ({exc.strerror})") from None
    try:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise _refuse(path, "changed while it was opened")
        _judge(path, after, recorded)
    except BaseException:
        os.close(fd)
        raise
    return fd, recorded, False


def _judge(path: str, st: os.stat_result, recorded: tuple[int, int] | None) -> None:
    """An existing --out file: only the one this job created, unchanged in kind, owner and mode."""
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link; passwords are never written through one")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "exists and is not a regular file")
    if stat.S_IMODE(st.st_mode) != 0o600:
        raise _refuse(path, f"exists with mode {stat.S_IMODE(st.st_mode):04o}")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"exists and belongs to uid {st.st_uid}, not to you")
    if recorded is None or (st.st_dev, st.st_ino) != tuple(recorded):
        raise _refuse(path, "already exists and is not the file this job created")


def _append_lines(fd: int, pairs: list[tuple[str, str]]) -> None:
    """login,password lines, on disk before the caller commits: CSV-quoted when a cell needs it,
    and a cell a spreadsheet would run as a formula marked with a leading ' (services/spreadsheet:
    the reader removes one leading ' to get the exact password)."""
    from .spreadsheet import rows_text

    if not pairs:
        return
    data = rows_text(pairs).encode("utf-8")
    while data:
        written = os.write(fd, data)
        data = data[written:]
    os.fsync(fd)


# ---- the modes --------------------------------------------------------------------------------

@dataclass
class _Pending:
    row: Row
    user: object = None
    password: str | None = None
    future: object = None
    new: object = None  # the NewPassword once hashed
    error: B24Error | None = None


def _not_found(row: Row) -> B24Error:
    return B24Error("not_found", f"line {row.line}: no account with the login {row.login!r}")


def _submit_chunk(ctx: Ctx, wctx: Ctx, pool, rows: list[Row]) -> list[_Pending]:
    """Draw the passwords (policy with history, here where the store is) and hand each to the
    pool as soon as it is drawn. Workers get a context without the store: an sqlite3 connection
    stays in its own thread."""
    from .admin import generate_password

    chunk = []
    for row in rows:
        item = _Pending(row)
        item.user = user_store.by_login_key(ctx.store.conn, row.key)
        if item.user is None:
            item.error = _not_found(row)
        elif item.user["external"]:
            item.error = external_error(item.user)
        else:
            try:
                item.password = generate_password(ctx, item.user)
                item.future = pool.submit(prepare_password, wctx, item.password, item.user)
            except B24Error as exc:
                item.error = exc
        chunk.append(item)
    return chunk


def _collect(chunk: list[_Pending]) -> list[_Pending]:
    """Wait for every hash of the chunk: called before its write transaction, never inside it."""
    for item in chunk:
        if item.future is not None:
            try:
                item.new = item.future.result()
            except B24Error as exc:
                item.error = exc
    return chunk


def _store_chunk(ctx: Ctx, job_id: int, chunk: list[_Pending], fd: int, summary: Summary,
                 notify: bool, reason: str | None) -> list[int]:
    """One short transaction for the whole chunk; returns the notices to deliver after it."""
    lines, messages, done = [], [], 0
    with ctx.store.write() as conn:
        for item in chunk:
            row = item.row
            try:
                with bulk_store.item(conn):
                    if _done_meanwhile(conn, job_id, row.key):
                        summary.skip(row, DONE_MEANWHILE)
                        continue
                    if item.error is not None:
                        raise item.error
                    user = user_store.by_id(conn, item.user["id"])
                    if user is None:
                        raise _not_found(row)
                    revoked = store_password(ctx, conn, user["id"], item.new, must_change=True,
                                             reason="password_reset")
                    message = notices.queue_password_changed(ctx, conn, user) if notify else None
                    ctx.audit(conn, "bulk.reset", user["login"], job=job_id, mode="temporary-password",
                              temporary=True, revoked=revoked, notified=message is not None, reason=reason)
                    _mark(ctx, conn, job_id, row.key, "done")
                    lines.append((user["login"], item.password))
                    if message is not None:
                        messages.append(message)
                    done += 1
            except B24Error as exc:
                _mark(ctx, conn, job_id, row.key, "failed", exc.code)
                summary.fail(row.login, row.line, exc.code, exc.message)
        _append_lines(fd, lines)  # before the commit: see the module docstring
    summary.done += done
    return messages


def _temporary_passwords(ctx: Ctx, rows: list[Row], summary: Summary, fd: int, *, notify: bool,
                         reason: str | None, workers: int, chunk: int, progress) -> None:
    """Chunk by chunk: hash in parallel, then store the chunk in one short transaction once all
    its hashes are done and before the next chunk is handed to the pool, so the chunk's write
    never coincides with bcrypt. The previous chunk's notices are delivered while the next one
    hashes (delivery is mostly waiting for the disk or the mail server)."""
    from concurrent.futures import ThreadPoolExecutor

    ctx.key()  # read the key once, so the workers' copy of the context carries it
    wctx = dataclasses.replace(ctx, store=None)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
    undelivered: list[int] = []
    try:
        for start in range(0, len(rows), chunk):
            submitted = _submit_chunk(ctx, wctx, pool, rows[start:start + chunk])
            summary.delivered(ctx, undelivered)
            undelivered = _store_chunk(ctx, summary.job, _collect(submitted), fd, summary, notify, reason)
            writeback.flush()  # the chunk's portal passwords, right after its commit
            if progress:
                progress(min(start + chunk, len(rows)), len(rows))
        summary.delivered(ctx, undelivered)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _channel_for(user) -> str:
    return "sms" if not user["email"] and user["phone"] else "email"


def _control_strings(ctx: Ctx, rows: list[Row], summary: Summary, *, force: bool, chunk: int,
                     progress) -> None:
    from .tokens import create, prepare

    handled = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        issued = []
        ahead = [user_store.by_login_key(ctx.store.conn, row.key) for row in part]
        prepared = {}
        for via in ("email", "sms"):  # the portal checkwords of the chunk, hashed before the lock
            prepared.update(prepare(ctx, [u for u in ahead if u is not None and _channel_for(u) == via], via))
        with ctx.store.write() as conn:
            for row in part:
                try:
                    with bulk_store.item(conn):
                        if _done_meanwhile(conn, summary.job, row.key):
                            summary.skip(row, DONE_MEANWHILE)
                            continue
                        user = user_store.by_login_key(conn, row.key)
                        if user is None:
                            raise _not_found(row)
                        if user["blocked"]:
                            summary.skip(row, "blocked: blocked accounts get no control strings")
                            _mark(ctx, conn, summary.job, row.key, "skipped", "blocked")
                            continue
                        result = create(ctx, conn, user, via=_channel_for(user), ttl=None, force=force,
                                        action="bulk.reset", prepared=prepared)
                        _mark(ctx, conn, summary.job, row.key, "done")
                        issued.append((row, result.message_id))
                except B24Error as exc:
                    _mark(ctx, conn, summary.job, row.key, "failed", exc.code)
                    summary.fail(row.login, row.line, exc.code, exc.message)
        writeback.flush()  # the chunk's portal checkwords, before their messages go out
        for row, message_id in issued:
            result = outbox.deliver(ctx, message_id)
            if result["status"] == "failed":
                summary.fail(row.login, row.line, "delivery_failed",
                             f"control string issued, but the message to {result['recipient']} failed "
                             f"({result['error']}); it stays in the outbox for 'b24recover outbox send'")
            else:
                summary.done += 1
        handled += len(part)
        if progress:
            progress(handled, len(rows))


# ---- the command ------------------------------------------------------------------------------

def check_options(mode: str, out: str | None, force: bool) -> None:
    if mode not in MODES:
        raise B24Error("usage", f"--mode must be one of {', '.join(MODES)}")
    if mode == "temporary-password" and not out:
        raise B24Error("usage", "--mode temporary-password needs --out FILE: generated passwords are written only there")
    if mode == "control-string" and out:
        raise B24Error("usage", "--out is only for --mode temporary-password (control strings are delivered, not written)")
    if force and mode != "control-string":
        raise B24Error("usage", "--force passes the control-string throttle; it has no meaning with temporary passwords")


def bulk_reset(ctx: Ctx, source: BinaryIO, mode: str, *, out: str | None = None, force: bool = False,
               notify: bool = True, reason: str | None = None, restart: bool = False,
               workers: int | None = None, chunk: int = CHUNK,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Run (or resume) a bulk reset. Returns the summary: mode, job, resumed, total, done,
    skipped [{login, line, reason}], failed [{login, line, code, reason}]."""
    check_options(mode, out, force)
    if chunk < 1 or (workers is not None and workers < 1):
        raise B24Error("usage", "--batch and --workers must be at least 1")
    reason = ids.clean_text(reason or "", "the reason", max_len=500).strip() or None
    fd = None
    try:
        summary = Summary(mode=mode)
        rows = read_logins(source, summary)
        summary.total = len(rows) + len(summary.failed) + len(summary.skipped)
        if not rows:
            return summary.as_dict()
        summary.job, summary.resumed, earlier, fd = _start_job(
            ctx, mode, [r.key for r in rows], restart, out if mode == "temporary-password" else None)
        todo = []
        for row in rows:
            if earlier.get(row.key) == "done":
                summary.skip(row, DONE_EARLIER)
            else:
                todo.append(row)
        if mode == "temporary-password":
            _temporary_passwords(ctx, todo, summary, fd, notify=notify, reason=reason,
                                 workers=workers or os.cpu_count() or 1, chunk=chunk, progress=progress)
        else:
            _control_strings(ctx, todo, summary, force=force, chunk=chunk, progress=progress)
        _finish_job(ctx, summary, reason, force)
        return summary.as_dict()
    finally:
        if fd is not None:
            os.close(fd)
