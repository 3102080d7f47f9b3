"""A portal row, read by `portal sync`, as the account fields the sync writes.

The Bitrix rules themselves live in services/bitrix.py (shared with `user import --format
bitrix`); this adds only what a live database has and an export file does not: several social
identities per user (b_socialservices_user) and PASSWORD_EXPIRED.
"""

from __future__ import annotations

import re

from ..errors import B24Error
from .context import Ctx

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def _with_social(row: dict, phone, social) -> dict:
    out = dict(row)
    out["PHONE_NUMBER"] = phone[0] if phone else None
    out["SOCIAL_PROVIDER"], out["XML_ID"] = social if social else (None, None)
    return out


def account_fields(ctx: Ctx, row: dict, phone, socials: list) -> dict | str:
    """The fields of portal_sync.FIELDS (plus email_key, phone_source), or the refusal reason."""
    from .bitrix import map_row
    from .importer import normalize_email, normalize_phone  # the same answers, faster (tests compare)

    sign_in = phone[0] if phone else None

    def phone_number(text: str, region: str) -> str:
        # b_user_phone_auth holds E.164, which Bitrix texts as it is (services/bitrix.py keeps an
        # E.164 value even when the number plan moved on): no need to parse it again.
        if text == sign_in and _E164.fullmatch(text):
            return text
        return normalize_phone(text, region)

    def mapped(social):
        return map_row(_with_social(row, phone, social), region=ctx.settings.default_country,
                       normalize_email=normalize_email, normalize_phone=phone_number)

    try:
        acc = mapped(socials[0] if socials else None)
        social = list(acc.social)
        for extra in socials[1:]:  # rare: one person linked to several networks
            social.extend(mapped(extra).social)
    except B24Error as exc:
        return exc.message
    expired = str(row.get("PASSWORD_EXPIRED") or "").strip().upper() == "Y"
    return {
        "login": acc.login, "external": acc.external, "email": acc.email, "email_key": acc.email_key,
        "phone": acc.phone, "phone_source": "profile" if acc.phone_from_profile else "phone_auth",
        "profile_phone": acc.profile_phone, "name": acc.name, "last_name": acc.last_name, "lang": acc.lang,
        "blocked": bool(acc.blocked), "password_hash": acc.password_hash,
        "must_change_password": expired and acc.password_hash is not None,
        "social": sorted(set(social)),
    }
