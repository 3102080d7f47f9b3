"""Password policy: a chain of small validators, each with its own message."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import PolicySettings
from ..errors import B24Error


@dataclass
class Violation:
    code: str
    message: str


def violations(policy: PolicySettings, password: str) -> list[Violation]:
    found = []
    if len(password) < policy.PASSWORD_LENGTH:
        found.append(Violation("too_short", f"use at least {policy.PASSWORD_LENGTH} characters"))
    if len(password) > policy.max_length:
        found.append(Violation("too_long", f"use at most {policy.max_length} characters"))
    return found


def enforce(policy: PolicySettings, password: str) -> None:
    found = violations(policy, password)
    if found:
        raise B24Error(
            "password_policy",
            "the password does not meet the policy: " + "; ".join(v.message for v in found),
            violations=[{"code": v.code, "message": v.message} for v in found],
        )
