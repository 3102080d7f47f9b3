"""Setting passwords: policy first, then hashing, always outside the write lock."""

from __future__ import annotations

from .context import Ctx
from .passwords import hash_password
from .policy import enforce


def new_password_hash(ctx: Ctx, password: str, **account) -> str:
    """Check a new password against the policy and hash it (slow: call before taking the lock)."""
    enforce(ctx.settings.policy, password)
    return hash_password(password, ctx.settings.bcrypt_rounds)
