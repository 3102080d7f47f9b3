"""Bitrix semantics: one `b_user` row (with its `b_user_phone_auth` and `b_socialservices_user`
columns) -> one account, or the reason it cannot be one (SPEC §4, §6). The one place of these
rules, shared by `user import --format bitrix` and `portal sync`.

A row is a mapping keyed by upper-case `b_user` column names (PostgreSQL's lower-case ones are
upper-cased by the caller); values are text, numbers or None, and empty text counts as None:

    LOGIN EMAIL PERSONAL_PHONE NAME LAST_NAME ACTIVE BLOCKED EXTERNAL_AUTH_ID PASSWORD LANGUAGE_ID
    ID              b_user.ID                              (optional)
    PHONE_NUMBER    b_user_phone_auth.PHONE_NUMBER         (optional: the number Bitrix texts)
    XML_ID          b_socialservices_user.XML_ID           (optional: the network's user id)
    SOCIAL_PROVIDER b_socialservices_user.EXTERNAL_AUTH_ID (optional: the network, e.g. GoogleOAuth)

Kinds of account, from `EXTERNAL_AUTH_ID`: empty -> internal (a password account); `socservices`
-> social-only (no password: Bitrix gives such users a random one nobody knows); anything else
(`LDAP#1`, `bot`, `email`, `imconnector`, ...) -> external: managed elsewhere, imported and shown,
never sent a control string, its PASSWORD ignored. Logins are unique per (LOGIN, external id).

Profile data never refuses an account: a PERSONAL_PHONE that is free text, or that another
account already has, is kept as `profile_phone` only; control characters in names become spaces.
What does refuse a row (raised as B24Error with the reason): no LOGIN, a login with control
characters or surrounding spaces, an ID that is not a number, an EMAIL that Bitrix's own
check_email would not have accepted, a PHONE_NUMBER that is not a number, or a PASSWORD that
Bitrix could never verify (bitrix_hash: the length rule, `$6$rounds=`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from ..errors import B24Error
from . import bitrix_hash
from . import identifiers as ids

COLUMNS = ("LOGIN", "EMAIL", "PERSONAL_PHONE", "NAME", "LAST_NAME", "ACTIVE", "BLOCKED",
           "EXTERNAL_AUTH_ID", "PASSWORD", "LANGUAGE_ID")
OPTIONAL = ("ID", "PHONE_NUMBER", "XML_ID", "SOCIAL_PROVIDER")
SOCIAL = "socservices"
LANGS = {"en": "en", "ru": "ru", "de": "de", "it": "it", "pt": "pt", "br": "pt"}
_FLAGS = {"y": True, "1": True, "true": True, "yes": True, "n": False, "0": False, "false": False, "no": False}

# Control and format characters (C0, C1, DEL, line/paragraph separators, bidi overrides and
# zero-width marks): in a name they are noise from old data, replaced by a space.
_NAME_NOISE = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]+")
# Bitrix check_email (main/tools.php): a dot-atom-ish local part, dotted domain, 2-20 char TLD.
# It knows nothing of special-use names, so user@portal.local and x@y.invalid are valid to it.
_BITRIX_EMAIL = re.compile(r"[=_.0-9a-z+~'!$&*^`|#%/?{}-]+@(?:[-0-9a-z_]+\.)+[-0-9a-z]{2,20}", re.I)
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


@dataclass(frozen=True)
class Account:
    """What a Bitrix row means to b24recover."""

    login: str
    kind: str                         # "internal" | "social" | "external"
    external: str | None              # EXTERNAL_AUTH_ID of an external account, else None
    portal_id: int | None = None
    email: str | None = None
    email_key: str | None = None
    phone: str | None = None          # sign-in phone, E.164
    phone_from_profile: bool = False  # phone came from PERSONAL_PHONE: drop it if it is shared
    profile_phone: str | None = None  # PERSONAL_PHONE as written
    name: str = ""
    last_name: str = ""
    lang: str | None = None
    blocked: bool | None = None       # None: neither ACTIVE nor BLOCKED given
    password_hash: str | None = None
    social: tuple[tuple[str, str], ...] = ()

    @property
    def login_key(self) -> str:
        return ids.login_key(self.login)

    def without_sign_in_phone(self) -> "Account":
        """The account when its PERSONAL_PHONE turned out to be shared: profile data only."""
        from dataclasses import replace

        return replace(self, phone=None, phone_from_profile=False)


def _text(row, column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    value = str(value).strip()
    return value or None


def _flag(row, column: str) -> bool | None:
    value = _text(row, column)
    if value is None:
        return None
    try:
        return _FLAGS[value.lower()]
    except KeyError:
        raise B24Error("invalid_input", f"{column} must be 1/0, true/false or Y/N") from None


def clean_name(value: str | None, what: str) -> str:
    """Names as profile data: control/format characters become one space, length bounded."""
    if not value:
        return ""
    value = _NAME_NOISE.sub(" ", value)
    value = re.sub(r" {2,}", " ", value).strip()[:ids.MAX_FIELD]
    return ids.clean_text(value, what)


def bitrix_email(text: str, normalize: Callable[[str], tuple[str, str]] = ids.normalize_email) -> tuple[str, str]:
    """(display, key) of an EMAIL; what Bitrix's check_email accepts is accepted, including
    special-use domains (`.local`, `.invalid`) that the strict validator refuses."""
    try:
        return normalize(text)
    except B24Error:
        candidate = text.strip()
        if len(candidate) <= 254 and _BITRIX_EMAIL.fullmatch(candidate):
            local, _, domain = candidate.rpartition("@")
            display = f"{local}@{domain.lower()}"
            return display, display.casefold()
        raise


def _phone_number(text: str, region: str, normalize: Callable[[str, str], str]) -> str:
    """b_user_phone_auth.PHONE_NUMBER: Bitrix keeps it in E.164 and texts it as it is, so an
    E.164 value stands even when the number plan has moved on."""
    try:
        return normalize(text, region)
    except B24Error:
        if _E164.fullmatch(text.replace(" ", "")):
            return text.replace(" ", "")
        raise


def _social(row, login: str, kind: str) -> tuple[tuple[str, str], ...]:
    subject = _text(row, "XML_ID")
    provider = _text(row, "SOCIAL_PROVIDER")
    if subject is None:
        # A social-only row without its b_socialservices_user columns: the login is the only
        # stable thing to name the identity by.
        return ((SOCIAL, login),) if kind == "social" else ()
    provider = (provider or SOCIAL).lower()
    if not re.fullmatch(r"[a-z0-9_.\-]+", provider):
        raise B24Error("invalid_input", f"SOCIAL_PROVIDER {provider[:40]!r} is not a provider name")
    return ((provider, ids.clean_text(subject, "XML_ID", max_len=512)),)


def map_row(row, *, region: str = "RU",
            normalize_email: Callable[[str], tuple[str, str]] = ids.normalize_email,
            normalize_phone: Callable[[str, str], str] = ids.normalize_phone) -> Account:
    """One Bitrix row -> Account, or B24Error with the reason the row cannot be imported.

    `normalize_email`/`normalize_phone` may be faster equivalents of the identifiers ones (the
    importer's); `region` reads numbers written without +country.
    """
    raw_login = row.get("LOGIN")
    login = ids.validate_login("" if raw_login is None else str(raw_login))
    portal_id = None
    if _text(row, "ID") is not None:
        try:
            portal_id = int(_text(row, "ID"))
        except ValueError:
            raise B24Error("invalid_input", f"ID must be a number, not {_text(row, 'ID')[:20]!r}") from None
    auth = _text(row, "EXTERNAL_AUTH_ID")
    if auth is None:
        kind, external = "internal", None
    elif auth.lower() == SOCIAL:
        kind, external = "social", None
    else:
        kind, external = "external", ids.clean_text(auth, "EXTERNAL_AUTH_ID", max_len=255)
    active, blocked = _flag(row, "ACTIVE"), _flag(row, "BLOCKED")
    is_blocked = None if active is None and blocked is None else (active is False or blocked is True)

    email = email_key = None
    if (text := _text(row, "EMAIL")) is not None:
        email, email_key = bitrix_email(text, normalize_email)

    profile_phone = _text(row, "PERSONAL_PHONE")
    if profile_phone is not None:
        profile_phone = clean_name(profile_phone, "PERSONAL_PHONE")[:64] or None
    phone, from_profile = None, False
    if (text := _text(row, "PHONE_NUMBER")) is not None:
        phone = _phone_number(text, region, normalize_phone)
    elif profile_phone is not None:
        try:
            phone, from_profile = normalize_phone(profile_phone, region), True
        except B24Error:
            pass  # free text ("доб. 123"): profile data only

    password = None
    if kind == "internal" and (stored := _text(row, "PASSWORD")) is not None:
        reason = bitrix_hash.refusal(stored)
        if reason is not None:
            raise B24Error("invalid_input", f"the PASSWORD is not a recognised hash: {reason}")
        password = stored

    lang = _text(row, "LANGUAGE_ID")
    return Account(
        login=login, kind=kind, external=external, portal_id=portal_id,
        email=email, email_key=email_key, phone=phone, phone_from_profile=from_profile,
        profile_phone=profile_phone,
        name=clean_name(_text(row, "NAME"), "NAME"), last_name=clean_name(_text(row, "LAST_NAME"), "LAST_NAME"),
        lang=LANGS.get(lang.lower()) if lang else None,
        blocked=is_blocked, password_hash=password, social=_social(row, login, kind),
    )


def can_recover(account) -> bool:
    """Bitrix lets only internal accounts recover (and social-only ones once an address is
    linked): an external account's password lives with whoever manages it."""
    external = account["external"] if not isinstance(account, Account) else account.external
    return not external


def external_error(user) -> B24Error | None:
    """`external_account` naming who manages an external account; None for other accounts."""
    external = user["external"]
    if not external:
        return None
    return B24Error("external_account",
                    f"the account {user['login']} is managed by {manager(external)}; b24recover does not "
                    "recover it", hint="Recover it where it is managed (for LDAP: reset it in the directory).",
                    external=external)


def refuse_external(user) -> None:
    """External accounts never get control strings or passwords from b24recover (SPEC §4)."""
    error = external_error(user)
    if error is not None:
        raise error


def manager(external: str) -> str:
    """Who manages an external account, in words for a helpdesk."""
    kind = external.split("#", 1)[0].lower()
    return {
        "ldap": f"the directory server ({external}: Active Directory/LDAP)",
        "bot": f"a chat bot ({external}): it has no person to recover",
        "email": f"the email integration ({external}): a mail-only guest user",
        "imconnector": f"an Open Channels connector ({external}): an external messenger user",
        "replica": f"the Bitrix24 network replica ({external})",
        "saml": f"the SAML identity provider ({external})",
    }.get(kind, f"the external authentication source {external!r}")


def names(header: list[str]) -> list[str]:
    """Column names as this module keys them (PostgreSQL exports are lower-case)."""
    return [unicodedata.normalize("NFC", h).strip().upper() for h in header]
