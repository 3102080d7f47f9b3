"""Rows turned into the JSON objects of the contract (SPEC §2). Never a secret."""

from __future__ import annotations

import json

from ..clock import iso


def token_state(row, now: int) -> str:
    if row["state"] == "active" and now > row["expires_at"]:
        return "expired"
    return row["state"]


def control_string_view(row, login: str, now: int) -> dict:
    return {
        "id": row["id"],
        "login": login,
        "kind": row["kind"],
        "channel": row["channel"],
        "purpose": row["purpose"],
        "state": token_state(row, now),
        "reason": row["end_reason"],
        "recipient": row["address"],
        "attempts": row["attempts"],
        "created_at": iso(row["created_at"]),
        "expires_at": iso(row["expires_at"]),
        "ended_at": iso(row["ended_at"]),
    }


def message_view(row) -> dict:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "recipient": row["recipient"],
        "template": row["template"],
        "status": row["status"],
        "error": row["error"],
        "attempts": row["attempts"],
        "created_at": iso(row["created_at"]),
        "sent_at": iso(row["sent_at"]),
        "message_id": row["message_id"],
        # While 'sending': until when the sender holds it (after that, `outbox send` may retry it).
        "lease_until": iso(row["lease_until"]),
    }


def event_view(row) -> dict:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "login": row["login"],
        "details": json.loads(row["details"]),
    }
