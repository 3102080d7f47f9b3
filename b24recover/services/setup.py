"""`init`: the store, the key file and the outbox folders."""

from __future__ import annotations

import os

from ..private_files import make_dirs
from ..store import audit as audit_store
from ..store import users as user_store
from ..store.db import init_store
from ..store.keyfile import ensure_key
from ..store.schema import SCHEMA_VERSION
from . import identifiers as ids
from .context import Ctx

SKELETON_BATCH = 2000
HEAD_MIGRATION = "0006_safety"  # the migration that added audit_head


def ensure_outbox_dirs(root) -> None:
    """The outbox folders, 0700 from the root down (existing ones checked; init tightens them)."""
    from ..private_files import check

    for folder in (root, root / "mail", root / "sms", *(root / "mail" / s for s in ("tmp", "new", "cur"))):
        check(folder, "the outbox folder", "unsafe_file", directory=True, tighten=True)
    for sub in ("mail/tmp", "mail/new", "mail/cur", "sms"):
        make_dirs(root, sub)


def fill_skeletons(ctx: Ctx, store) -> int:
    """Accounts stored before logins had a look-alike skeleton get one (a batch per transaction)."""
    filled = 0
    while True:
        with store.write() as conn:
            rows = user_store.missing_skeletons(conn, SKELETON_BATCH)
            for row in rows:
                user_store.update(conn, row["id"], {"login_skeleton": ids.login_skeleton(row["login"])})
        filled += len(rows)
        if len(rows) < SKELETON_BATCH:
            return filled


def init_all(ctx: Ctx) -> dict:
    settings = ctx.settings
    store, applied = init_store(settings.db_path)
    try:
        # The key first: every audit event moves the chain's head, which the key authenticates.
        new_key = ensure_key(settings.key_path)
        ctx.store = store
        with store.write() as conn:
            if HEAD_MIGRATION in applied:
                audit_store.seal_head(conn, ctx.key())  # a trail older than its head: start it here
            if applied:
                ctx.audit(conn, "store.init", None, applied=applied, schema_version=SCHEMA_VERSION)
        fill_skeletons(ctx, store)
    finally:
        ctx.store = None
        store.close()
    ensure_outbox_dirs(settings.outbox_dir)
    return {
        "db": str(settings.db_path),
        "schema_version": SCHEMA_VERSION,
        "applied": applied,
        "key_file": "B24RECOVER_SECRET" if os.environ.get("B24RECOVER_SECRET") else str(settings.key_path),
        "key_created": new_key,
        "outbox": str(settings.outbox_dir),
    }
