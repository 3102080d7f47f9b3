"""`audit tokens` (stale control strings, their purge) and `audit log` (the trail, its chain).

The purge deletes in short transactions (2,000 rows to start, then sized by time) and steps
aside between them, so that operators and the portal writing at the same time wait a moment at
most. Every batch commits on its own, so a purge killed at any point leaves a consistent store
and the next run simply carries on; the cutoff is fixed when a run starts, so it never chases
rows that turn stale while it works.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Callable

from ..clock import iso, parse_duration, parse_when
from ..errors import B24Error
from ..store import audit as audit_store
from ..store import purge as purge_store
from . import identifiers as ids
from . import writeback
from .context import Ctx
from .views import event_view

BATCH = 2000


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_older_than(text: str | None) -> int | None:
    """--older-than as seconds; None (the configured retention) when not given."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise B24Error("usage", f"--older-than: {exc}") from None


# ---- pacing ----------------------------------------------------------------------------------

@dataclass
class Pacer:
    """Gives writers in other processes their turn, and sizes the batches.

    SQLite has no queue for the write lock: a waiting process sleeps in its busy handler and
    retries, at most 100 ms apart. So the purge works for `window` seconds, then releases the
    lock for `pause` seconds (longer than that longest sleep), which lets a waiter in. If someone
    did commit during the pause, another may be queued behind them: it pauses once more (up to
    `max_pauses` in a row). The pause is not idle: `chores` (the WAL checkpoint, which needs no
    write lock) run in it. A writer arriving at the worst moment waits about window + one batch
    + pause.

    Batches start at `batch` rows; when `adaptive`, they double while one takes under half of
    `target` seconds and halve when one takes longer, within [min_batch, max_batch]: bigger
    transactions rewrite each index page fewer times, and `target` bounds how long one holds
    the lock.
    """

    batch: int = BATCH
    adaptive: bool = True
    target: float = 0.2
    min_batch: int = 200
    max_batch: int = 20000
    window: float = 0.3
    pause: float = 0.12
    max_pauses: int = 2
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    yielded: float = 0.0
    _started: float | None = field(default=None, repr=False)

    def took(self, seconds: float) -> None:
        """Adjust the batch size to how long the last batch held the lock."""
        if not self.adaptive:
            return
        if seconds < self.target / 2:
            self.batch = min(self.max_batch, self.batch * 2)
        elif seconds > self.target:
            self.batch = max(self.min_batch, self.batch // 2)

    def after_batch(self, others_wrote: Callable[[], bool], chores: Callable[[], None] | None = None) -> None:
        now = self.clock()
        if self._started is None:
            self._started = now
        if now - self._started < self.window:
            return
        for n in range(self.max_pauses):
            began = self.clock()
            if chores and n == 0:
                chores()
            rest = self.pause - (self.clock() - began)
            if rest > 0:
                self.sleep(rest)
            self.yielded += self.clock() - began
            if not others_wrote():
                break
        self._started = self.clock()


# ---- audit tokens ----------------------------------------------------------------------------

def _cutoff(ctx: Ctx, older_than: int | None) -> tuple[int, int]:
    retention = ctx.settings.tokens.retention if older_than is None else older_than
    if retention < 0:
        raise B24Error("usage", "--older-than must not be negative")
    return retention, ctx.now() - retention


def stale_tokens(ctx: Ctx, older_than: int | None = None) -> dict:
    """The stale control strings by state, and what the rule was."""
    return _report(ctx, *_cutoff(ctx, older_than))


def _report(ctx: Ctx, retention: int, cutoff: int) -> dict:
    counts, held = purge_store.stale_counts(ctx.store.conn, cutoff)
    return {"stale": counts, "purged": 0, "total": sum(counts.values()), "held": held,
            "older_than": _duration_text(retention), "cutoff": iso(cutoff)}


def purge_tokens(ctx: Ctx, older_than: int | None = None, *, dry_run: bool = False, batch: int | None = None,
                 progress: Callable[[int, int], None] | None = None, pacer: Pacer | None = None) -> dict:
    """Delete the stale control strings in batches; idempotent and resumable.

    batch: rows per transaction, fixed; None sizes them by time (from BATCH rows, see Pacer).
    progress(done, total) is called after every batch. Records `audit.purge.start` before the
    first batch (so an interrupted run is visible in the trail) and `audit.purge` with the
    counts at the end, also when interrupted or stopped by an error."""
    if batch is not None and batch < 1:
        raise B24Error("usage", "the batch size must be at least 1")
    retention, cutoff = _cutoff(ctx, older_than)
    report = _report(ctx, retention, cutoff)
    report.update(dry_run=dry_run, purged_by_state={s: 0 for s in purge_store.STATES}, batches=0,
                  seconds=0.0, yielded_seconds=0.0)
    if dry_run or report["total"] == 0:
        if not dry_run:
            _record_end(ctx, report, 0.0, None)
        return report
    with ctx.store.write() as conn:
        ctx.audit(conn, "audit.purge.start", None, cutoff=report["cutoff"], older_than=report["older_than"],
                  stale=report["stale"], held=report["held"])
    pacer = pacer or (Pacer() if batch is None else Pacer(batch=batch, adaptive=False))
    started = time.monotonic()
    stopped: BaseException | None = None
    try:
        _run_batches(ctx, report, cutoff, progress, pacer)
    except (KeyboardInterrupt, B24Error) as exc:
        stopped = exc
        raise
    finally:
        report["seconds"] = round(time.monotonic() - started, 3)
        report["yielded_seconds"] = round(pacer.yielded, 3)
        _record_end(ctx, report, report["seconds"], stopped)
    return report


def _run_batches(ctx: Ctx, report: dict, cutoff: int, progress, pacer: Pacer) -> None:
    store = ctx.store
    with purge_store.bulk_session(store.conn) as set_null:
        seen = purge_store.data_version(store.conn)

        def others_wrote() -> bool:
            nonlocal seen
            now_seen = purge_store.data_version(store.conn)
            changed, seen = now_seen != seen, now_seen
            return changed

        def checkpoint() -> None:
            purge_store.checkpoint(store.conn)

        for state in purge_store.STATES:
            if not report["stale"][state]:
                continue  # the cutoff is fixed: rows only leave the stale set (held ones wait for a later run)
            while True:
                size, began = pacer.batch, time.monotonic()
                with store.write() as conn:
                    deleted = purge_store.delete_batch(conn, state, cutoff, size, set_null)
                    if deleted:
                        writeback.clear_checkwords_of_purged(ctx, conn)
                pacer.took(time.monotonic() - began)
                seen = purge_store.data_version(store.conn)
                report["purged_by_state"][state] += deleted
                report["purged"] += deleted
                report["batches"] += 1 if deleted else 0
                if progress:
                    progress(report["purged"], report["total"])
                if deleted < size:
                    break
                if not store.lock_queues_waiters:  # else a waiter gets the lock at our commit
                    pacer.after_batch(others_wrote, checkpoint)
        checkpoint()


def _record_end(ctx: Ctx, report: dict, seconds: float, stopped: BaseException | None) -> None:
    details = {"cutoff": report["cutoff"], "older_than": report["older_than"], "purged": report["purged"],
               "by_state": report["purged_by_state"], "held": report["held"], "batches": report["batches"],
               "seconds": seconds}
    if stopped is not None:
        details["interrupted"] = getattr(stopped, "code", "interrupted")
    try:
        with ctx.store.write() as conn:
            ctx.audit(conn, "audit.purge", None, **details)
    except B24Error:
        if stopped is None:
            raise
        # The store refused the record too; the original error is the one to report.


def check_stale(report: dict) -> None:
    """--check: exit 10 (check_found) when stale control strings exist."""
    total = sum(report["stale"].values())
    if total:
        parts = ", ".join(f"{n} {state}" for state, n in report["stale"].items() if n)
        raise B24Error("check_found", f"{total} stale control string(s) older than {report['older_than']}: {parts}",
                       hint="Delete them with: b24recover audit tokens --purge", stale=report["stale"])


# ---- audit log -------------------------------------------------------------------------------

def events(ctx: Ctx, *, login: str | None = None, action: str | None = None, since: str | None = None,
           limit: int | None = 100) -> list[dict]:
    """The newest `limit` matching events (all with limit 0 or None), oldest first."""
    key = ids.login_key(ids.clean_text(login, "the login", allow_empty=False)) if login is not None else None
    if action is not None:
        action = ids.clean_text(action, "the action", max_len=100, allow_empty=False)
    when = None
    if since is not None:
        try:
            when = parse_when(since, ctx.now())
        except ValueError as exc:
            raise B24Error("usage", f"--since: {exc}") from None
    if limit is not None and limit < 0:
        raise B24Error("usage", "--limit must be 0 (no limit) or more")
    rows = audit_store.query(ctx.store.conn, login_key=key, action=action, since=when, limit=limit or None)
    return [event_view(r) for r in rows]


def _fault(row, prev_id: int | None, prev_hash: str) -> str | None:
    """Why this event breaks the chain, or None."""
    expected_id = 1 if prev_id is None else prev_id + 1
    if row["id"] != expected_id:
        gap = f"{expected_id}" if row["id"] == expected_id + 1 else f"{expected_id}-{row['id'] - 1}"
        return f"event(s) {gap} before it are missing"
    if row["prev_hash"] != prev_hash:
        before = "the start of the trail" if prev_id is None else f"event {prev_id}"
        return f"its link to {before} does not match: an earlier event was changed, removed or inserted"
    digest = audit_store.event_hash(row["prev_hash"], row["id"], row["at"], row["actor"], row["action"],
                                    row["login"], row["details"])
    if digest != row["hash"]:
        return "its content does not match its hash: it was changed after it was written"
    if row["login_key"] != (ids.login_key(row["login"]) if row["login"] else None):
        return "its login_key does not match its login: it was changed after it was written"
    return None


def verify_chain(ctx: Ctx, progress: Callable[[int, int], None] | None = None) -> dict:
    """Walk the trail from the first event, recomputing every hash; name the first broken one."""
    conn = ctx.store.conn
    total, _ = purge_store.audit_bounds(conn)
    missing = purge_store.missing_audit_guards(conn)
    prev_id, prev_hash, seen, broken = None, audit_store.GENESIS, 0, None
    for row in audit_store.iterate(conn):
        reason = _fault(row, prev_id, prev_hash)
        if reason:
            broken = {"id": row["id"], "at": iso(row["at"]), "action": row["action"], "login": row["login"],
                      "reason": reason}
            break
        prev_id, prev_hash = row["id"], row["hash"]
        seen += 1
        if progress and seen % 10000 == 0:
            progress(seen, total)
    if progress:
        progress(seen, total)
    if broken is None:
        broken = _head_fault(ctx, conn, prev_id, prev_hash)
    return {"verified": broken is None and not missing, "events": total, "checked": seen, "broken": broken,
            "guards_missing": missing, "head": {"id": prev_id, "hash": prev_hash} if prev_id else None}


def _head_fault(ctx: Ctx, conn, last_id: int | None, last_hash: str) -> dict | None:
    """The intact chain must end where the head (kept outside the table, authenticated with the
    key) says: otherwise its newest events were deleted, or the head was forged."""
    recorded = audit_store.head(conn)
    if recorded is None:
        if last_id is None:
            return None  # an empty trail, as before the first event
        reason = "the head of the trail is missing (it was deleted)"
    elif recorded["mac"].startswith(audit_store.TAINTED):
        reason = (f"the head of the trail was altered or removed before event {recorded['mac'][len(audit_store.TAINTED):]} "
                  "was written")
    elif not hmac.compare_digest(recorded["mac"], audit_store.head_mac(ctx.key(), recorded["last_id"],
                                                                         recorded["last_hash"])):
        reason = "the head of the trail does not match the key file (it was forged, or the key was replaced)"
    elif last_id is None or recorded["last_id"] > last_id:
        first = 1 if last_id is None else last_id + 1
        gap = f"{first}" if first == recorded["last_id"] else f"{first}-{recorded['last_id']}"
        reason = f"the newest event(s) {gap} were deleted"
    elif recorded["last_id"] < last_id:
        reason = f"event(s) after {recorded['last_id']} were added without moving the head"
    elif recorded["last_hash"] != last_hash:
        reason = "the newest event is not the one the head names: it was replaced"
    else:
        return None
    at_id = recorded["last_id"] if recorded is not None else last_id
    return {"id": at_id, "at": None, "action": "audit.head", "login": None, "reason": reason}


def check_chain(result: dict) -> None:
    """--verify found something: exit 10 (check_found) naming the first broken event."""
    broken = result["broken"]
    if broken and broken["action"] == "audit.head":
        raise B24Error("check_found", f"the audit trail does not end where its head says: {broken['reason']}",
                       hint="The head is kept outside the trail and sealed with the key file; compare with a "
                            "backup of the store and with the syslog copy (see docs/security.md).",
                       broken=broken)
    if broken:
        raise B24Error("check_found",
                       f"the audit trail is broken at event {broken['id']} ({broken['action']}, {broken['at']}): "
                       f"{broken['reason']}",
                       hint="The events up to the one before it are intact. Compare with a backup of the store "
                            "and find out who had write access (see docs/security.md).",
                       broken=broken)
    if result["guards_missing"]:
        ops = " and ".join(result["guards_missing"])
        raise B24Error("check_found",
                       f"the audit trail's append-only triggers are gone (it accepts {ops}); "
                       f"the chain of {result['checked']} events is intact",
                       hint="Someone changed the schema: restore the store from a backup, or run the "
                            "migration that creates them (see docs/security.md).",
                       guards_missing=result["guards_missing"])
