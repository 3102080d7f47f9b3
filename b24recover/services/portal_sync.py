"""`portal sync`: read the portal's accounts into the store (SPEC §6), never writing the portal.

Which rows a run reads. A full run (`--full`, and the very first run) walks b_user by ID. An
incremental run reads the rows whose (TIMESTAMP_X, ID) comes after the cursor, in that order.
TIMESTAMP_X has one-second resolution and a portal transaction may commit a moment after it
took its timestamp, so the cursor alone could miss a row written in the same second as the
last one read: each incremental run therefore also re-reads the rows stamped in the last
OVERLAP seconds before the previous run began (by the portal's clock). Re-reading is harmless:
a row whose content did not change counts as `unchanged` and changes nothing.

How a run survives kill -9. Rows are applied in batches; each batch is one store transaction
that also moves the run's resume point, so a killed run leaves whole batches and a resume point
that agrees with them. The next `portal sync` (with or without --full) first finishes the
interrupted run, then the cursor moves.

What an account takes from its row. The store keeps, per account, a short digest of each field
as last read (never the value). A re-read applies only the fields the portal changed since, so
a change b24recover made locally (a reset not written back, a block) is not undone by a sync of
an unchanged portal row, and a change made in the portal wins over an older local value.

Conflicts. An identifier held by another account (a login or phone moved between two portal
accounts, a local account using the same address) is not fatal to the run: the row is kept as
a `conflict` and retried at the end of every run, when a later row may have freed it. Rows that
cannot become accounts at all are refused with their reason. Refused rows are always listed,
with the portal ID, and stay listed in `portal_refused` until a read accepts them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from ..store import portal as portal_store
from ..store import tokens as token_store
from ..store import users as user_store
from . import identifiers as ids
from .accounts import revoke_on_change
from .context import Ctx

BATCH = 2000          # portal rows per store transaction
OVERLAP_SECONDS = 10  # re-read rows stamped this long before the previous run began (see above)
# The account fields a portal row sets, in the order of the digests.
FIELDS = ("login", "external", "email", "phone", "profile_phone", "name", "last_name", "lang", "blocked",
          "password_hash", "must_change_password", "social")
COUNTS = ("read", "added", "updated", "unchanged", "gone")


class _Conflict(Exception):
    """An identifier of the row is held by another account."""


@dataclass
class SyncResult:
    full: bool
    dry_run: bool
    resumed: bool = False
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    refused: list = field(default_factory=list)
    email_unique: bool | None = None
    cursor: str | None = None

    def to_json(self) -> dict:
        c = self.counts
        return {"added": c["added"], "updated": c["updated"], "unchanged": c["unchanged"], "gone": c["gone"],
                "refused": self.refused, "read": c["read"], "full": self.full, "dry_run": self.dry_run,
                "resumed": self.resumed, "email_unique": self.email_unique, "cursor": self.cursor}


FIELDS_FORM = "v1:"  # versioned form of the stored field digests: FIELDS order, 16 hex digits each


def _digest(value) -> bytes:
    """A short, stable digest of one value (str, int, bool, None, a list of pairs): enough to
    tell a change, useless to read the value back."""
    data = ("s" + value).encode("utf-8", "surrogatepass") if type(value) is str else repr(value).encode("utf-8")
    return hashlib.blake2b(data, digest_size=8).digest()


def field_digests(mapped: dict) -> str:
    return FIELDS_FORM + b"".join(_digest(mapped[f]) for f in FIELDS).hex()


def changed_fields(stored: str | None, current: str) -> list[str]:
    """The fields whose digest differs; all of them when nothing (or another form) was stored."""
    if not stored or not stored.startswith(FIELDS_FORM) or len(stored) != len(current):
        return list(FIELDS)
    at = len(FIELDS_FORM)
    return [f for i, f in enumerate(FIELDS) if stored[at + 16 * i:at + 16 * i + 16] != current[at + 16 * i:at + 16 * i + 16]]


def _ts_text(value) -> str | None:
    return None if value is None else value.isoformat(sep=" ")


def _ts(text: str | None):
    return None if text is None else dt.datetime.fromisoformat(text)


def _key_max(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or a[0] is None:
        return b
    if b is None or b[0] is None:
        return a
    return max(a, b)


def start_key(state: dict) -> tuple | None:
    """Where an incremental run starts: after the cursor, or earlier to re-read the overlap."""
    if state["cursor_ts"] is None:
        return None
    cursor = (_ts(state["cursor_ts"]), int(state["cursor_id"] or 0))
    if state["horizon"] is not None:
        overlap = (_ts(state["horizon"]) - dt.timedelta(seconds=OVERLAP_SECONDS), 0)
        return min(cursor, overlap)
    return cursor


def sync(ctx: Ctx, *, full: bool = False, dry_run: bool = False, progress=None) -> SyncResult:
    """Run (or finish) a sync. `progress(done, total)` is called after each batch."""
    from ..portal.adapter import Portal

    with portal_store.sync_lock(ctx.store), Portal.open(ctx.settings) as portal:
        return _Run(ctx, portal, full=full, dry_run=dry_run, progress=progress).run()


def refresh(ctx: Ctx, portal_ids: list[int]) -> SyncResult:
    """Re-read these portal rows now and apply them as a sync would, without moving the cursor:
    for a command that must act on the portal's current row (the write-back issue re-reads an
    account before issuing or redeeming). Rows gone from the portal are not marked here."""
    from ..portal.adapter import Portal

    with Portal.open(ctx.settings) as portal:
        run = _Run(ctx, portal, full=False, dry_run=False, progress=None)
        run.run_id = int(run.state["run_id"] or 0)  # refusals belong to the last run
        run.result.resumed = False
        for start in range(0, len(portal_ids), BATCH):
            rows = portal.users_by_ids([int(i) for i in portal_ids[start:start + BATCH]])
            run._batch(rows, retry=True)
            run.result.counts["read"] += len(rows)
        run.result.refused = [{"portal_id": r["portal_id"], "login": r["login"], "reason": r["reason"]}
                              for r in portal_store.refused(ctx.store.conn) if r["portal_id"] in set(portal_ids)]
        return run.result


class _DryRun(Exception):
    """Raised inside a dry run's batch transaction so that it is rolled back."""


class _Run:
    def __init__(self, ctx: Ctx, portal, *, full: bool, dry_run: bool, progress):
        from ..portal import grouppolicy

        self.ctx, self.portal, self.dry_run, self.progress = ctx, portal, dry_run, progress
        self.conn = ctx.store.conn
        self.charset = ctx.settings.portal.charset
        portal.tables()  # fails early, with the reason, when this is no Bitrix database
        option = portal.email_unique()
        # The portal's own rule decides (SPEC §4): Bitrix's default for an unset option is 'N'.
        self.email_unique = ctx.settings.accounts.unique_email if option is None else option
        self.groups = {gid: grouppolicy.parse(text, self.charset) for gid, text in portal.group_policies().items()}
        self.state = portal_store.state(self.conn)
        resume = self.state["run_mode"] is not None and not dry_run
        if resume and full and self.state["run_mode"] == "incremental":
            resume = False  # --full supersedes an interrupted incremental run (it reads everything anyway)
        self.full = (self.state["run_mode"] == "full") if resume else (full or self.state["cursor_ts"] is None)
        self.result = SyncResult(full=self.full, dry_run=dry_run, resumed=resume, email_unique=self.email_unique)
        # identifier -> portal id of the row that took it: this batch's rows (and, in a dry run,
        # whose batches are rolled back, every earlier batch's too)
        self.claimed: dict = {}
        self.inserts: list = []  # new accounts of this batch, written together at its end
        if resume:
            self.run_id = self.state["run_id"]
            self.result.counts.update({k: int(v) for k, v in self.state["run_counts"].items() if k in COUNTS})
            self.horizon = self.state["run_horizon"]
            self.after = (int(self.state["run_after_id"] or 0) if self.full else
                          (None if self.state["run_after_ts"] is None else
                           (_ts(self.state["run_after_ts"]), int(self.state["run_after_id"] or 0))))
            self.max_key = (None if self.state["run_max_ts"] is None
                            else (_ts(self.state["run_max_ts"]), int(self.state["run_max_id"])))
        else:
            self.run_id = int(self.state["run_id"] or 0) + 1
            self.horizon = _ts_text(portal.now())
            self.after = 0 if self.full else start_key(self.state)
            self.max_key = None

    # ---- the run -----------------------------------------------------------------------------

    def run(self) -> SyncResult:
        # A new run is recorded with its first batch (one commit less): until then there is
        # nothing to resume.
        self.starting = {} if self.result.resumed or self.dry_run else {
            "run_id": self.run_id, "run_mode": "full" if self.full else "incremental",
            "run_started_at": self.ctx.now(), "run_horizon": self.horizon}
        done = total = 0
        if self.progress:
            total = self._remaining()  # another scan of b_user: only for the bar
            self.progress(0, total)
        while True:
            if self.full:
                rows = self.portal.users_by_id(self.after, BATCH)
            else:
                rows = self.portal.users_after(self.after, BATCH)
            if not rows:
                break
            last = rows[-1]
            self.after = int(last["ID"]) if self.full else (last["TIMESTAMP_X"], int(last["ID"]))
            for row in rows:
                self.max_key = _key_max(self.max_key, (row["TIMESTAMP_X"], int(row["ID"])))
            self._batch(rows, retry=False)
            done += len(rows)
            if self.progress:
                self.progress(done, max(total, done))
            if len(rows) < BATCH:
                break
        self._finish()
        return self.result

    def _position(self) -> dict:
        if self.full:
            return {"run_after_ts": None, "run_after_id": self.after}
        if self.after is None:
            return {"run_after_ts": None, "run_after_id": None}
        return {"run_after_ts": _ts_text(self.after[0]), "run_after_id": self.after[1]}

    def _remaining(self) -> int:
        if self.full:
            return self.portal.count_after_id(self.after)
        return self.portal.count_changed(self.after)

    def _finish(self) -> None:
        """Mark the gone (full runs), retry the conflicts, move the cursor, audit the counts."""
        counts = self.result.counts
        if self.full:
            self._mark_gone()
        if not self.dry_run:
            retry = [r["portal_id"] for r in portal_store.refused(self.conn, kind="conflict")]
            for start in range(0, len(retry), BATCH):
                self._batch(self.portal.users_by_ids(retry[start:start + BATCH]), retry=True)
        if self.dry_run:
            return
        now = self.ctx.now()
        cursor = _key_max(None if self.state["cursor_ts"] is None else
                          (_ts(self.state["cursor_ts"]), int(self.state["cursor_id"] or 0)), self.max_key)
        refused = portal_store.refused(self.conn, run_id=self.run_id)
        self.result.refused = [{"portal_id": r["portal_id"], "login": r["login"], "reason": r["reason"]}
                               for r in refused]
        self.result.cursor = None if cursor is None else _ts_text(cursor[0])
        with self.ctx.store.write() as conn:
            changes = {"run_mode": None, "run_after_ts": None, "run_after_id": None, "run_max_ts": None,
                       "run_max_id": None, "run_counts": {}, "horizon": self.horizon, "last_sync_at": now,
                       "email_unique": None if self.email_unique is None else int(self.email_unique),
                       "engine": self.portal.engine, "version": self.portal.version()}
            if cursor is not None:
                changes.update(cursor_ts=_ts_text(cursor[0]), cursor_id=cursor[1])
            if self.full:
                changes["last_full_at"] = now
            portal_store.save_state(conn, changes)
            self.ctx.audit(conn, "portal.sync", None, full=self.full, resumed=self.result.resumed,
                           added=counts["added"], updated=counts["updated"], unchanged=counts["unchanged"],
                           gone=counts["gone"], refused=len(refused), read=counts["read"],
                           portal=f"{self.portal.dsn.engine}://{self.portal.dsn.where}")

    def _mark_gone(self) -> None:
        """Accounts whose portal row no longer exists: marked, their control strings revoked."""
        present = self.portal.all_ids()
        known = portal_store.portal_ids(self.conn)
        gone = [(pid, uid) for pid, (uid, _login, was_gone) in known.items() if pid not in present and not was_gone]
        vanished_refusals = [r["portal_id"] for r in portal_store.refused(self.conn) if r["portal_id"] not in present]
        self.result.counts["gone"] += len(gone)
        if self.dry_run or not (gone or vanished_refusals):
            return
        now = self.ctx.now()
        with self.ctx.store.write() as conn:
            portal_store.mark_gone(conn, [uid for _, uid in gone], now)
            for _, uid in gone:
                token_store.revoke_active(conn, uid, now, "portal_gone")
            portal_store.accept(conn, vanished_refusals)
            portal_store.save_state(conn, {**self.starting, "run_counts": self.result.counts})

    # ---- one batch ---------------------------------------------------------------------------

    def _batch(self, rows: list[dict], *, retry: bool) -> None:
        """Map the rows (before the store's write lock), then apply them in one transaction that
        also moves the run's position."""
        from ..portal import grouppolicy
        from .portal_map import account_fields

        user_ids = [int(r["ID"]) for r in rows]
        phones = self.portal.phones(user_ids)
        socials = self.portal.socials(user_ids)
        groups = self.portal.user_groups(user_ids)
        prepared = []
        for row in rows:
            pid = int(row["ID"])
            policy = grouppolicy.strictest(self.groups.get(g, {}) for g in
                                           (grouppolicy.EVERYONE_GROUP, *groups.get(pid, ())))
            prepared.append((row, account_fields(self.ctx, row, phones.get(pid), socials.get(pid, [])), policy))
        before = dict(self.result.counts)
        refused_here: list = []
        try:
            with self.ctx.store.write() as conn:
                existing = portal_store.by_portal_ids(conn, user_ids)
                self.hits = self._hits(conn, [m for _, m, _ in prepared if not isinstance(m, str)])
                touched: list[int] = []
                accepted: list[int] = []
                reads: list[tuple] = []
                now = self.ctx.now()
                if not self.dry_run:
                    self.claimed = {}  # earlier batches are in the store now
                self.inserts = []
                for row, mapped, policy in prepared:
                    pid = int(row["ID"])
                    outcome = self._row(conn, row, mapped, policy, existing.get(pid), now, touched, reads)
                    if outcome in ("added", "updated", "unchanged"):
                        self.result.counts[outcome] += 1
                        accepted.append(pid)
                    else:
                        kind, reason = outcome
                        refused_here.append({"portal_id": pid, "login": row["LOGIN"], "reason": reason})
                        if not self.dry_run:
                            portal_store.refuse(conn, pid, row["LOGIN"], reason, kind, self.run_id, now)
                if not retry:
                    self.result.counts["read"] += len(rows)
                self._flush_inserts(conn, now, touched, reads)
                portal_store.remember_reads(conn, reads)
                portal_store.mark_read(conn, touched, now)
                portal_store.accept(conn, accepted)
                if self.dry_run:
                    raise _DryRun
                if not retry:
                    portal_store.save_state(conn, {
                        **self.starting, **self._position(), "run_counts": self.result.counts,
                        "run_max_ts": _ts_text(self.max_key[0]) if self.max_key else None,
                        "run_max_id": self.max_key[1] if self.max_key else None})
            if not retry:
                self.starting = {}
        except _DryRun:
            pass
        except BaseException:
            self.result.counts = before  # nothing of this batch was written
            raise
        if self.dry_run:
            self.result.refused.extend(refused_here)

    def _hits(self, conn, mapped: list[dict]) -> set:
        """The batch's identifiers already in the store: only rows touching one of them need
        the per-row lookups (nearly all rows of a first sync touch none)."""
        from ..store import imports as import_store

        logins = [ids.login_key(m["login"]) for m in mapped]
        emails = [m["email_key"] for m in mapped if m["email_key"]]
        phones = [m["phone"] for m in mapped if m["phone"]]
        hits = {("login", k) for k in import_store.keys_in_use(conn, "login_key", logins)}
        hits.update(("email", k) for k in import_store.keys_in_use(conn, "email_key", emails))
        hits.update(("phone", k) for k in import_store.keys_in_use(conn, "phone", phones))
        hits.update(("social", p) for p in import_store.socials_in_use(conn, [tuple(x) for m in mapped
                                                                                for x in m["social"]]))
        return hits

    def _row(self, conn, row: dict, mapped, policy: dict, existing, now: int, touched: list, reads: list):
        """Apply one portal row: 'added', 'updated', 'unchanged', or (kind, reason) when refused."""
        pid = int(row["ID"])
        if isinstance(mapped, str):
            return ("data", mapped)
        checkword_timeout = policy.get("CHECKWORD_TIMEOUT")
        rules = {k: v for k, v in policy.items() if k != "CHECKWORD_TIMEOUT"}
        digests = field_digests(mapped)
        row_digest = hashlib.blake2b(f"{digests}|{checkword_timeout}|{sorted(rules.items())}".encode(),
                                     digest_size=8).hexdigest()
        if existing is None and ("login", ids.login_key(mapped["login"])) in self.hits:
            existing = self._adoptable(conn, mapped)
        if existing is not None and existing.get("portal_digest") == row_digest:
            touched.append(existing["id"])
            return "unchanged"
        read = (_ts_text(row["TIMESTAMP_X"]), row_digest, digests, checkword_timeout, rules)
        try:
            if existing is None:
                self._insert(conn, pid, mapped, read)
                return "added"  # written with the batch's other new accounts (_flush_inserts)
            else:
                user_id = existing["id"]
                portal_changed = changed_fields(existing.get("portal_fields"), digests)
                self._update(conn, existing, pid, mapped, portal_changed, now)
                outcome = "updated"
        except _Conflict as exc:
            return ("conflict", str(exc))
        reads.append((user_id, *read))
        touched.append(user_id)
        return outcome

    def _adoptable(self, conn, mapped: dict):
        """A local account with the same (login, external id) and no portal id: the same person,
        imported from a file before the portal was connected. It is adopted, not duplicated."""
        other = user_store.by_login(conn, ids.login_key(mapped["login"]), mapped["external"])
        if other is None or other["portal_id"] is not None:
            return None
        return dict(other) | {"portal_digest": None, "portal_fields": None}

    # ---- writing accounts ----------------------------------------------------------------------

    def _check(self, conn, what: str, value, holder_id: int | None, pid: int, finder) -> None:
        if value is None:
            return
        claimed = self.claimed.get((what, value))
        if claimed is not None and claimed != pid:
            raise _Conflict(f"the {what} is also on portal ID {claimed}, read earlier in this run")
        key = value[0] if what == "login" else value
        if (what, key) not in self.hits:
            return  # in no account before this batch, and no earlier row of it took it
        other = finder(conn, value)
        if other is not None and other["id"] != holder_id:
            owner = f"portal ID {other['portal_id']}" if other["portal_id"] is not None else "a local account"
            raise _Conflict(f"the {what} {value!r} is held by {owner} ({other['login']!r})")

    def _claim(self, pid: int, mapped: dict) -> None:
        """The row's identifiers are taken now: later rows of the batch must look them up."""
        self.hits.add(("login", ids.login_key(mapped["login"])))
        if mapped["email_key"]:
            self.hits.add(("email", mapped["email_key"]))
        if mapped["phone"]:
            self.hits.add(("phone", mapped["phone"]))
        self.hits.update(("social", tuple(p)) for p in mapped["social"])
        for what, value in self._identifiers(mapped):
            self.claimed.setdefault((what, value), pid)

    def _identifiers(self, mapped: dict):
        yield "login", (ids.login_key(mapped["login"]), mapped["external"] or "")
        if mapped["email_key"] and self.email_unique:
            yield "email", mapped["email_key"]
        if mapped["phone"]:
            yield "phone", mapped["phone"]
        for pair in mapped["social"]:
            yield "social", tuple(pair)

    def _checks(self, conn, mapped: dict, holder_id: int | None, pid: int, which) -> dict:
        """Raise _Conflict for an identifier held elsewhere; returns the fields to write (a
        profile phone that is shared is kept as profile data only, never a refusal)."""
        out = dict(mapped)
        if "login" in which:
            key = ids.login_key(mapped["login"])
            self._check(conn, "login", (key, mapped["external"] or ""), holder_id, pid,
                        lambda c, v: user_store.by_login(c, v[0], v[1] or None))
        if "email" in which and self.email_unique and mapped["email_key"]:
            self._check(conn, "email", mapped["email_key"], holder_id, pid, user_store.by_email_key)
        if "phone" in which and mapped["phone"]:
            try:
                self._check(conn, "phone", mapped["phone"], holder_id, pid, user_store.by_phone)
            except _Conflict:
                if mapped["phone_source"] != "profile":
                    raise
                out["phone"] = None  # a shared office number: profile data, not a sign-in phone
        if "social" in which:
            for provider, subject in mapped["social"]:
                claimed = self.claimed.get(("social", (provider, subject)))
                if claimed is not None and claimed != pid:
                    raise _Conflict(f"{provider}:{subject} is also on portal ID {claimed}, read earlier in this run")
                if ("social", (provider, subject)) not in self.hits:
                    continue
                other = user_store.social_owner(conn, provider, subject)
                if other is not None and other["id"] != holder_id:
                    raise _Conflict(f"{provider}:{subject} already belongs to the account {other['login']!r}")
        return out

    def _insert(self, conn, pid: int, mapped: dict, read: tuple) -> None:
        """Check and queue a new account; the batch's claims keep its identifiers from the rest."""
        fields = self._checks(conn, mapped, None, pid, ("login", "email", "phone", "social"))
        self._claim(pid, fields)
        self.inserts.append((pid, fields, read))

    def _flush_inserts(self, conn, now: int, touched: list, reads: list) -> None:
        """The batch's new accounts in multi-row INSERTs (the full-text trigger costs a fraction
        of one statement per row), then their social identities and last reads."""
        from ..store import imports as import_store

        if not self.inserts:
            return
        rows = [(f["login"], ids.login_key(f["login"]), f["email"], f["email_key"], f["phone"], f["name"],
                 f["last_name"], f["lang"], int(f["blocked"]), f["password_hash"], now, now,
                 now if f["password_hash"] else None, f["external"], f["profile_phone"], pid)
                for pid, f, _ in self.inserts]  # in import_store.INSERT_COLUMNS order
        new_ids = import_store.insert_many(conn, rows, returning=True)
        for pid, f, read in self.inserts:
            user_id = new_ids[(ids.login_key(f["login"]), f["external"])]
            if f["must_change_password"]:
                user_store.update(conn, user_id, {"must_change_password": 1})
            for provider, subject in f["social"]:
                user_store.add_social(conn, user_id, provider, subject, now)
            reads.append((user_id, *read))
            touched.append(user_id)
        self.inserts = []

    def _update(self, conn, existing: dict, pid: int, mapped: dict, portal_changed: list, now: int) -> None:
        """Write the fields the portal changed since the last read (all of them on adoption)."""
        fields = self._checks(conn, mapped, existing["id"], pid, portal_changed)
        self._claim(pid, fields)
        wanted = {}
        for f in portal_changed:
            if f == "social":
                continue
            if f == "login":
                wanted["login"], wanted["login_key"] = fields["login"], ids.login_key(fields["login"])
            elif f == "email":
                wanted["email"], wanted["email_key"] = fields["email"], fields["email_key"]
            elif f in ("blocked", "must_change_password"):
                wanted[f] = int(fields[f])
            else:
                wanted[f] = fields[f]
        changes = {k: v for k, v in wanted.items() if existing.get(k) != v}
        if existing.get("portal_id") is None:
            changes["portal_id"] = pid
        if "password_hash" in changes:
            changes["password_changed_at"] = now
        if changes:
            changes["updated_at"] = now
            user_store.update(conn, existing["id"], changes)
            revoke_on_change(conn, existing["id"], changes, now)
        if "social" in portal_changed:
            portal_store.replace_socials(conn, existing["id"], fields["social"], now)
