"""What the store knows of an account's portal row, for `user show`, `lookup` and `diagnose`."""

from __future__ import annotations

from ..clock import iso
from ..errors import B24Error
from ..store import portal as portal_store


def portal_view(conn, row) -> dict | None:
    """None for an account that was never read from a portal."""
    if row["portal_id"] is None:
        return None
    read = portal_store.read_of(conn, row["id"]) or {}
    return {
        "portal_id": row["portal_id"],
        "synced_at": iso(row["portal_synced_at"]),
        "gone": bool(row["portal_gone"]),
        "timestamp_x": read.get("timestamp_x"),
        "checkword_timeout_minutes": read.get("checkword_timeout"),
        "group_policy": read.get("policy") or {},
    }


def last_read_text(portal: dict | None) -> str | None:
    """One line for people: when the account was last read from the portal."""
    if portal is None:
        return None
    text = f"portal ID {portal['portal_id']}, last read from the portal at {portal['synced_at'] or 'never'}"
    if portal["gone"]:
        text += "; no longer in the portal (it gets no recovery)"
    return text


def gone_finding(name: str, portal: dict | None) -> dict | None:
    if portal is None or not portal["gone"]:
        return None
    return {"code": "portal_gone",
            "message": f"{name} no longer exists in the portal (a full sync after {portal['synced_at']} did not "
                       "find it): b24recover sends it no control strings and accepts none.",
            "action": "If the account was removed by mistake, restore it in Bitrix24, then: b24recover portal sync --full"}


def require_in_portal(user) -> None:
    """An account the portal no longer has gets no control string and no new password: there is
    nothing left to recover. Answered as not found (exit 3), with the reason; the portal-facing
    `token request` stays silent as for every refusal."""
    if user["portal_gone"]:
        raise B24Error("not_found", f"the account {user['login']!r} no longer exists in the portal "
                       f"(portal ID {user['portal_id']}); it gets no recovery",
                       hint="If it was removed by mistake, restore it in Bitrix24, then: b24recover portal sync --full")
