"""Logins, emails and phone numbers: validation and the keys accounts are matched on.

Keys are what uniqueness and lookup use: logins and emails case-insensitively (NFC + casefold),
phones as E.164. Heavy libraries (email-validator, phonenumbers) load only when needed, so
that a lookup by an ordinary address stays fast.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import B24Error

MAX_FIELD = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]+$")
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")


def clean_text(value: str, what: str, max_len: int = MAX_FIELD, allow_empty: bool = True) -> str:
    """A free-text field (name, language, login): bounded, printable, no NUL or control bytes."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise B24Error("invalid_input", f"{what} must be text")
    if not_utf8(value):
        raise B24Error("invalid_input", f"{what} is not valid UTF-8")
    if _CONTROL.search(value):
        raise B24Error("invalid_input", f"{what} contains a control character or NUL byte")
    if len(value) > max_len:
        raise B24Error("invalid_input", f"{what} is longer than {max_len} characters")
    value = unicodedata.normalize("NFC", value)
    if not allow_empty and not value.strip():
        raise B24Error("invalid_input", f"{what} must not be empty")
    return value


def not_utf8(text: str) -> bool:
    """Undecodable bytes (from argv or a file read with surrogateescape) and lone surrogates."""
    return _SURROGATE.search(text) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def login_key(login: str) -> str:
    return _fold(login)


# Characters that are invisible in a login: format characters (Cf: zero-width space and
# joiners, soft hyphen, bidi controls, BOM) and the rest of Unicode's Default_Ignorable_Code_Point
# set (fillers, variation selectors, the combining grapheme joiner).
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or _IGNORABLE.match(ch) is not None


def validate_login(login: str) -> str:
    """A login to store: NFKC (full-width and other compatibility forms become plain letters),
    no invisible characters, no spaces at either end."""
    login = clean_text(login, "the login", allow_empty=False)
    hidden = next((ch for ch in login if _invisible(ch)), None)
    if hidden is not None:
        raise B24Error("invalid_input", f"the login contains an invisible character (U+{ord(hidden):04X} "
                       f"{unicodedata.name(hidden, 'format character')}); it would look like another login",
                       hint="Type the login again without it.")
    login = unicodedata.normalize("NFKC", login)
    if login != login.strip():
        raise B24Error("invalid_input", "the login must not begin or end with spaces")
    if len(login) > MAX_FIELD:
        raise B24Error("invalid_input", f"the login is longer than {MAX_FIELD} characters")
    return login


def login_skeleton(login: str) -> str:
    """What a login looks like: Unicode TR39's skeleton, case-insensitively, so that logins a
    person cannot tell apart (Cyrillic `а` and Latin `a`, `rn` and `m`, `I` and `l`) share one."""
    from .confusables import skeleton

    return skeleton(skeleton(unicodedata.normalize("NFKC", login)).casefold())


# ---- email -------------------------------------------------------------------------------

def looks_like_email(text: str) -> bool:
    return "@" in text.strip()


def normalize_email(text: str) -> tuple[str, str]:
    """Validate an address to store. Returns (display form, match key)."""
    text = clean_text(text, "the email", max_len=320).strip()
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise B24Error("invalid_email", f"{text!r} is not a valid email address: {exc}") from None
    return result.normalized, _fold(result.normalized)


def email_lookup_key(text: str) -> str | None:
    """The match key for a query; None when it cannot be an address."""
    text = text.strip()
    if text.isascii() and "xn--" not in text.lower():
        # Plain ASCII: the key is the folded address; validation is not needed to look up.
        if text.count("@") != 1 or _CONTROL.search(text):
            return None
        return text.casefold()
    try:
        return normalize_email(text)[1]
    except B24Error:
        return None


# ---- phone -------------------------------------------------------------------------------

_DASHES = {ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"}


def _phone_text(text: str) -> str:
    """Full-width digits and typographic dashes, as pasted from documents, become plain ones."""
    return unicodedata.normalize("NFKC", text).translate(_DASHES).strip()


def looks_like_phone(text: str) -> bool:
    text = _phone_text(text)
    digits = sum(ch.isdigit() for ch in text)
    return bool(_PHONE_CHARS.match(text)) and 5 <= digits <= 17


def normalize_phone(text: str, region: str) -> str:
    """Validate a number to store and return it as E.164."""
    text = _phone_text(clean_text(text, "the phone number", max_len=64))
    if any(ch.isalpha() for ch in text):
        # phonenumbers would read letters as keypad digits (or drop an extension): a typo
        # must not quietly become someone else's number.
        raise B24Error("invalid_phone", f"{text!r} is not a phone number: it contains letters")
    e164 = _parse_phone(text, region, strict=True)
    if e164 is None:
        raise B24Error(
            "invalid_phone",
            f"{text!r} is not a valid phone number (numbers without +country are read as {region})",
        )
    return e164


def phone_lookup_key(text: str, region: str) -> str | None:
    text = _phone_text(text)
    if not looks_like_phone(text):
        return None
    if text.startswith("+") and "(0)" not in text:
        # Already international: E.164 is the digits after '+', no parser needed.
        digits = _PHONE_SEPARATORS.sub("", text[1:])
        if digits.isdigit() and 8 <= len(digits) <= 15:
            return "+" + digits
    return _parse_phone(text, region, strict=False)


def _parse_phone(text: str, region: str, strict: bool) -> str | None:
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if strict and not phonenumbers.is_valid_number(number):
        return None
    if not strict and not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# ---- social ------------------------------------------------------------------------------

def parse_social(text: str) -> tuple[str, str]:
    """'PROVIDER:SUBJECT' -> (provider lower-cased, subject as given)."""
    text = clean_text(text, "the social identity", max_len=512)
    provider, sep, subject = text.partition(":")
    provider = provider.strip().lower()
    if not sep or not provider or not subject.strip() or not re.fullmatch(r"[a-z0-9_.\-]+", provider):
        raise B24Error("invalid_input", f"{text!r} is not PROVIDER:SUBJECT (e.g. google:1234567890)")
    return provider, subject.strip()


# ---- language ----------------------------------------------------------------------------

def normalize_lang(lang: str | None) -> str | None:
    from ..config import LANGUAGES

    if lang is None or lang == "":
        return None
    lang = clean_text(lang, "the language", max_len=8).strip().lower()
    if lang not in LANGUAGES:
        raise B24Error("invalid_input", f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
    return lang
