"""`init`: the store, the key file and the outbox folders."""

from __future__ import annotations

import os

from ..store.db import init_store
from ..store.keyfile import ensure_key
from ..store.schema import SCHEMA_VERSION
from .context import Ctx


def ensure_outbox_dirs(root) -> None:
    for sub in ("mail/tmp", "mail/new", "mail/cur", "sms"):
        os.makedirs(root / sub, mode=0o700, exist_ok=True)


def init_all(ctx: Ctx) -> dict:
    settings = ctx.settings
    store, applied = init_store(settings.db_path)
    try:
        with store.write() as conn:
            if applied:
                ctx.audit(conn, "store.init", None, applied=applied, schema_version=SCHEMA_VERSION)
    finally:
        store.close()
    new_key = ensure_key(settings.key_path)
    ensure_outbox_dirs(settings.outbox_dir)
    return {
        "db": str(settings.db_path),
        "schema_version": SCHEMA_VERSION,
        "applied": applied,
        "key_file": "B24RECOVER_SECRET" if os.environ.get("B24RECOVER_SECRET") else str(settings.key_path),
        "key_created": new_key,
        "outbox": str(settings.outbox_dir),
    }
