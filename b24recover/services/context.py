"""What every service function works with: the store, the settings, a clock and the actor."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import SystemClock
from ..config import Settings
from ..store import audit as audit_store
from ..store.db import Store


@dataclass
class Ctx:
    store: Store
    settings: Settings
    clock: object = SystemClock()
    actor: str = "unknown"
    detach: bool = False  # `token request` may hand its delivery to a detached process (cli main only)

    _key: bytes | None = None

    def now(self) -> int:
        return self.clock.now()

    def key(self) -> bytes:
        """The secret key outside the database (key file or B24RECOVER_SECRET), read once."""
        if self._key is None:
            from ..store.keyfile import load_key

            self._key = load_key(self.settings.key_path)
        return self._key

    def audit(self, conn, action: str, login: str | None, **details) -> None:
        """Record an event inside the caller's write transaction. Never pass a secret here."""
        audit_store.append(conn, at=self.now(), actor=self.actor, action=action, login=login, details=details)
