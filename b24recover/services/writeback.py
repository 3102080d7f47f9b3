"""Write-backs: the changes b24recover makes to a portal account, made in the portal too (SPEC §6).

Queued in the same local transaction as the change (`queue`), applied right after the commit
and outside the store's write lock (`flush`), retried by `portal push`. A write is claimed with
a lease exactly like an outbox message (store/leases.py), so concurrent pushes apply each write
once; applying is also idempotent (a write the portal already holds is only marked done), so a
crash between the portal's commit and ours repeats nothing. What is queued holds Bitrix `$6$`
hashes, computed before the write lock, never a clear password or checkword.

A write that cannot be applied now stays queued as `failed` with the portal's reason; the
command that made the change ends with `portal_write_failed` (exit 9) after its normal output.
"""

from __future__ import annotations

import hashlib
import json

from ..errors import B24Error
from ..store import portal_writes as queue_store
from .context import Ctx

LEASE = 300  # seconds: longer than a connect (10 s) plus the slowest statement allowed (120 s), twice

_queued: list[tuple[Ctx, int]] = []  # queued by this command, to apply after the commit
_failures: list[str] = []    # reasons of this command's write-backs that could not be applied now


def enabled(ctx: Ctx, user) -> bool:
    """Whether changes to this account are written back: `[portal] write = true`, a portal
    configured, and an account read from it."""
    portal = ctx.settings.portal
    return bool(portal.write and portal.dsn and user is not None and user["portal_id"] is not None)


def _hash(ctx: Ctx, secret: str, what: str) -> str:
    from .bitrix_hash import bitrix_hash

    try:
        return bitrix_hash(secret, ctx.settings.portal.charset)
    except ValueError:
        raise B24Error("invalid_input", f"the {what} has characters the portal's charset "
                       f"({ctx.settings.portal.charset}) cannot hold",
                       hint="Choose one the portal can store (its database is not UTF-8).") from None


def password_payload(ctx: Ctx, password: str) -> dict:
    """What a new password writes, hashed now (slow: call before the write lock): the password
    and a fresh random checkword, so every old portal link dies as in Bitrix."""
    return {"password": _hash(ctx, password, "password"), "checkword": random_checkword()}


def random_checkword() -> str:
    """A `$6$` CHECKWORD of a random control string nobody knows. Its digest part is drawn at
    random rather than computed: no one holds a preimage either way, and it saves a 5000-round
    SHA-512-crypt per password (measured: bench/README.md)."""
    import secrets

    from .bitrix_hash import new_salt

    alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digest = "".join(secrets.choice(alphabet[:-2] if i == 85 else alphabet) for i in range(86))
    return f"$6${new_salt()}${digest}"


def checkword_hash(ctx: Ctx, control_string: str) -> str:
    return _hash(ctx, control_string, "control string")


def queue(ctx: Ctx, conn, user, kind: str, payload: dict) -> int | None:
    """Queue one write-back inside the caller's transaction (nothing when write-back is off)."""
    if not enabled(ctx, user):
        return None
    write_id = queue_store.insert(conn, user_id=user["id"], portal_id=user["portal_id"], kind=kind,
                                  payload=payload, now=ctx.now())
    _queued.append((ctx, write_id))
    return write_id


def refuse_portal_obstacle(ctx: Ctx, user, kind: str, payload: dict) -> None:
    """Before the local change: a write-back the portal could not take (another portal user holds
    the number; an internal namesake of a social-only login) is refused now, as a `conflict`, so
    nothing is changed, sent or used up here. An unreachable portal is no refusal: the write-back
    then waits in the queue, and applying it checks again."""
    if not enabled(ctx, user):
        return
    from ..portal.writer import read_obstacle

    try:
        reason = read_obstacle(ctx.settings, kind, payload, user["portal_id"])
    except B24Error as exc:
        if exc.code != "portal_unavailable":
            raise
        return
    if reason is not None:
        raise B24Error("conflict", f"{user['login']}: {reason}",
                       hint="Resolve it in the portal (or choose another value), then run the command again.")


def refuse_link_obstacles(ctx: Ctx, user, *, phone: str | None = None) -> None:
    """`link` before it sends a control string, `redeem` before it uses one: the number to be
    confirmed, and a social-only account's first password, must be ones the portal can take."""
    if not enabled(ctx, user):
        return
    if phone is not None:
        refuse_portal_obstacle(ctx, user, "phone", {"phone": phone, "confirmed": True})
    if first_password(ctx.store.conn, user):
        refuse_portal_obstacle(ctx, user, "password", {"first": True})


def first_password(conn, user) -> bool:
    """Whether a new password is a social-only account's first one (its portal row is then made
    internal, as docs/bitrix.md explains)."""
    from ..store import users as user_store

    return user["password_hash"] is None and bool(user_store.socials(conn, user["id"]))


def link_ttl(ctx: Ctx, conn, user, ttl: int) -> int:
    """A link's lifetime: b24recover's, or the user's CHECKWORD_TIMEOUT when that is shorter
    (the portal refuses the checkword after it)."""
    if not enabled(ctx, user):
        return ttl
    from ..store import portal as portal_store

    read = portal_store.read_of(conn, user["id"])
    minutes = read and read["checkword_timeout"]
    return min(ttl, int(minutes) * 60) if minutes and int(minutes) > 0 else ttl


# ---- two writers -------------------------------------------------------------------------------

def reconcile(ctx: Ctx, user):
    """Before issuing, checking or redeeming: the portal's row as it is now. A CHECKWORD other
    than the one b24recover wrote means the portal sent its own, newer message: b24recover's
    control string is superseded. Changed PASSWORD, EMAIL, LOGIN, ACTIVE or BLOCKED refresh the
    account first (which revokes its control string, SPEC §4). Returns the account as now stored.
    While a write-back of the account is still open there is nothing to compare yet; when the
    portal cannot be reached the write-back that follows reports it."""
    if not enabled(ctx, user) or queue_store.open_for_user(ctx.store.conn, user["id"]):
        return user
    from ..portal.writer import checkword_digest, read_checkword
    from ..store import tokens as token_store
    from ..store import users as user_store
    from .portal_sync import refresh

    try:
        found, checkword = read_checkword(ctx.settings, user["portal_id"])
        if not found:
            return user
        ours = queue_store.checkword_of(ctx.store.conn, user["id"])
        if ours is not None and ours["superseded_at"] is None and checkword_digest(checkword) != ours["digest"]:
            with ctx.store.write() as conn:
                ended = token_store.supersede_by_portal(conn, ours["control_string_id"], ctx.now()) \
                    if ours["control_string_id"] else 0
                queue_store.mark_superseded(conn, user["id"], ctx.now())
                ctx.audit(conn, "token.portal_superseded", user["login"], control_string=ours["control_string_id"],
                          superseded=ended)
        refresh(ctx, [user["portal_id"]])
    except B24Error as exc:
        if exc.code != "portal_unavailable":
            raise
        return user
    return user_store.by_id(ctx.store.conn, user["id"]) or user


# ---- applying ---------------------------------------------------------------------------------

def flush() -> dict:
    """Apply what this command queued (call after the commit, outside the write lock). Failures
    are remembered for the command's exit (take_failure)."""
    counts = {"done": 0, "failed": 0, "skipped": 0}
    while _queued:
        ctx = _queued[0][0]
        ids = [write_id for c, write_id in _queued if c is ctx]
        _queued[:] = [(c, w) for c, w in _queued if c is not ctx]
        for key, value in apply_ids(ctx, ids).items():
            counts[key] += value
    return counts


class _Portal:
    """The portal connection of one round of write-backs, opened at the first claimed write."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.writer, self.error, self.tried = ctx, None, None, False

    def get(self):
        if not self.tried:
            from ..portal.writer import PortalWriter

            self.tried = True
            try:
                self.writer = PortalWriter.open(self.ctx.settings)
            except B24Error as exc:
                self.error = exc
        if self.writer is None:
            raise self.error
        return self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


BATCH = 200  # writes claimed, and recorded, per store transaction


def apply_ids(ctx: Ctx, ids: list[int], *, remember: bool = True) -> dict:
    """Claim the writes (one store transaction per batch), apply each in its own portal
    transaction, record the batch's results in one store transaction. A crash between a portal
    commit and the record leaves the write claimed; after the lease another push finds the
    portal already holding it (idempotent apply) and only records it."""
    counts = {"done": 0, "failed": 0, "skipped": 0}
    portal = _Portal(ctx)
    last_error = None
    try:
        for start in range(0, len(ids), BATCH):
            error = _apply_batch(ctx, ids[start:start + BATCH], portal, counts)
            last_error = error or last_error
    finally:
        portal.close()
    if counts["failed"] and remember:
        _failures.append(f"{counts['failed']} of {len(ids)} portal write-back(s) could not be applied: {last_error}")
    return counts


def _apply_batch(ctx: Ctx, ids: list[int], portal: _Portal, counts: dict) -> str | None:
    from ..store.leases import claimant

    owner = claimant()
    claimed = []
    with ctx.store.write() as conn:
        for write_id in ids:
            # One account's next write becomes claimable once its earlier one is done: claimed
            # in order within the batch, later ones of the same account wait for the next round.
            if queue_store.claim(conn, write_id, owner=owner, now=ctx.now(), lease=LEASE):
                claimed.append(queue_store.by_id(conn, write_id))
            else:
                counts["skipped"] += 1
    results, last_error, broken = [], None, set()
    for row in claimed:
        payload = json.loads(row["payload"])
        if row["portal_id"] in broken:  # keep the account's order: retried after its earlier write
            results.append((row, payload, "an earlier write-back of this account failed"))
            continue
        try:
            portal.get().apply(row["kind"], payload, row["portal_id"])
            results.append((row, payload, None))
        except B24Error as exc:
            results.append((row, payload, exc.message))
            broken.add(row["portal_id"])
            last_error = exc.message
    with ctx.store.write() as conn:
        for row, payload, error in results:
            if error is not None:
                queue_store.mark_failed(conn, row["id"], owner, error)
                ctx.audit(conn, "portal.write_failed", _login(conn, row), write=row["id"], kind=row["kind"], error=error)
                counts["failed"] += 1
                continue
            marked = queue_store.mark_done(conn, row["id"], owner, ctx.now())
            if not marked:  # the lease ran out and another push took it: that push finds it applied
                ctx.audit(conn, "portal.lease_lost", _login(conn, row), write=row["id"], kind=row["kind"])
            if row["user_id"] is not None:
                _note_own_write(ctx, conn, row["user_id"], row["kind"], payload)
            if marked:
                conn.execute("UPDATE portal_writes SET payload = '{}' WHERE id = ?", (row["id"],))  # hashes no longer needed
            counts["done"] += 1
    return last_error


def _login(conn, row) -> str | None:
    user = conn.execute("SELECT login FROM users WHERE id = ?", (row["user_id"],)).fetchone() if row["user_id"] else None
    return user[0] if user else None


def _note_own_write(ctx: Ctx, conn, user_id: int, kind: str, payload: dict) -> None:
    """What b24recover wrote is not a change by the portal: the last read is updated to it (so a
    sync does not revoke the account's control string), and the checkword written is kept."""
    from ..portal.writer import checkword_digest

    fields = {"password": {"password_hash": payload.get("password"), "must_change_password": payload.get("expired")},
              "blocked": {"blocked": payload.get("blocked")}, "email": {"email": payload.get("email")},
              "phone": {"phone": payload.get("phone")}}.get(kind)
    if fields:
        _update_read(conn, user_id, fields)
    if kind in ("password", "checkword"):
        queue_store.remember_checkword(conn, user_id, checkword_digest(payload["checkword"]),
                                       payload.get("control_string_id"), ctx.now())
    elif kind == "clear_checkword":
        queue_store.remember_checkword(conn, user_id, checkword_digest(None), None, ctx.now())


def _update_read(conn, user_id: int, values: dict) -> None:
    from .portal_sync import FIELDS, FIELDS_FORM, _digest

    row = conn.execute("SELECT fields, checkword_timeout, policy FROM portal_accounts WHERE user_id = ?",
                       (user_id,)).fetchone()
    if row is None or not row[0].startswith(FIELDS_FORM) or len(row[0]) != len(FIELDS_FORM) + 16 * len(FIELDS):
        return
    text = row[0]
    for field, value in values.items():
        at = len(FIELDS_FORM) + 16 * FIELDS.index(field)
        text = text[:at] + _digest(value).hex() + text[at + 16:]
    # The row digest as portal_sync computes it, so an unchanged row reads as unchanged.
    rules = json.loads(row[2] or "{}")
    digest = hashlib.blake2b(f"{text}|{row[1]}|{sorted(rules.items())}".encode(), digest_size=8).hexdigest()
    conn.execute("UPDATE portal_accounts SET fields = ?, digest = ? WHERE user_id = ?", (text, digest, user_id))


def push(ctx: Ctx, progress=None) -> dict:
    """`portal push`: every pending or failed write-back (and any whose claimant's lease ended)."""
    ids = queue_store.claimable_ids(ctx.store.conn, ctx.now())
    counts = apply_ids(ctx, ids, remember=False)
    counts["total"] = len(ids)
    left = queue_store.counts(ctx.store.conn)
    counts.update(still_pending=left["pending"], still_failed=left["failed"])
    return counts


def take_failure() -> B24Error | None:
    """The error a command ends with when some of its write-backs could not be applied now."""
    if not _failures:
        return None
    reason = "; ".join(_failures)
    _failures.clear()
    return B24Error("portal_write_failed", reason + ". The change is kept in b24recover and stays queued.",
                    hint="Run b24recover portal push once the portal database is reachable (or from cron).")


def reset_command() -> None:
    _queued.clear()
    _failures.clear()


# ---- --dry-run ----------------------------------------------------------------------------------

_HIDDEN = "(masked)"


def preview(ctx: Ctx, login: str | None, kind: str | None, *, local: list[str] | None = None,
            note: str | None = None, **flags) -> dict:
    """What a writing command would run in the portal for this account, values of secrets
    masked; nothing is read from the portal and nothing is changed anywhere. Without `login`
    (redeem and token request, which must not tell accounts apart, and user add, whose account
    does not exist yet) the statements name the account's portal ID as a placeholder, and are
    shown whenever write-back is on. `local`: what the command would do in the store, said in
    words; `note`: why nothing is written to the portal when `kind` is None."""
    from ..portal.dsn import parse_dsn
    from ..portal.writer import statements
    from .accounts import get_user

    if login is None:
        user = {"login": flags.get("typed_login"), "portal_id": 0}
        on = bool(ctx.settings.portal.write and ctx.settings.portal.dsn)
    else:
        user = get_user(ctx.store.conn, login)
        on = enabled(ctx, user)
        if kind == "password" and "first" not in flags:
            flags["first"] = first_password(ctx.store.conn, user)
    out = {"dry_run": True, "login": user["login"], "portal_id": user["portal_id"] if login else None, "write": on,
           "statements": []}
    if local is not None:
        out["local"] = local
    if kind is None:
        out["note"] = note or "SMS codes stay b24recover's own: nothing is written to the portal"
        return out
    if not out["write"]:
        out["note"] = ("[portal] write is off" if not ctx.settings.portal.write else "not a portal account") + \
            ": nothing would be written to the portal"
        return out
    payload = {"password": _HIDDEN, "checkword": _HIDDEN, "digest": _HIDDEN, "expired": bool(flags.get("expired")),
               "blocked": bool(flags.get("blocked")), "email": flags.get("email"), "phone": flags.get("phone"),
               "confirmed": bool(flags.get("confirmed")), "first": bool(flags.get("first"))}
    engine = parse_dsn(ctx.settings.portal.dsn).engine
    shown = [st.shown() for st in statements(kind, payload, user["portal_id"], engine)]
    out["statements"] = shown if login else [s.replace("= 0", "= <portal ID>").replace("(0,", "(<portal ID>,")
                                             for s in shown]
    return out


# ---- clearing checkwords -------------------------------------------------------------------------

def clear_checkwords_of_purged(ctx: Ctx, conn) -> int:
    """`audit tokens --purge`, inside its batch's transaction: the portal CHECKWORDs b24recover
    wrote for control strings now purged are cleared (only where the portal still holds ours)."""
    if not (ctx.settings.portal.write and ctx.settings.portal.dsn):
        return 0
    rows = conn.execute(
        "SELECT u.*, pc.digest AS written FROM portal_checkwords pc JOIN users u ON u.id = pc.user_id"
        " WHERE pc.control_string_id IS NOT NULL AND pc.superseded_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM control_strings c WHERE c.id = pc.control_string_id)").fetchall()
    for row in rows:
        _queue_clear(ctx, conn, row, row["written"])
    return len(rows)


def clear_checkword_of(ctx: Ctx, conn, user, token_id: int) -> None:
    """`token revoke`: the revoked link must not keep working on the portal's own page."""
    mine = queue_store.checkword_of(conn, user["id"])
    if mine is not None and mine["control_string_id"] == token_id and mine["superseded_at"] is None:
        _queue_clear(ctx, conn, user, mine["digest"])


def _queue_clear(ctx: Ctx, conn, user, digest: str) -> None:
    if queue(ctx, conn, user, "clear_checkword", {"digest": digest}) is not None:
        conn.execute("UPDATE portal_checkwords SET control_string_id = NULL WHERE user_id = ?", (user["id"],))
