"""Recovery messages in five languages.

Texts live in one TOML catalog per language (<lang>.toml: a table per template with `subject` and
`body`, plus a `[common]` table with the greeting and footer). Durations and times are rendered by
babel in the reader's locale; every value is substituted exactly once, so a value that contains
"{" is printed as is and never re-read as a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

LANGS = ("en", "ru", "de", "it", "pt")
TEMPLATES = ("recovery_link", "sms_code", "password_changed", "link_confirm", "link_code", "address_linked")

# Bitrix's LANGUAGE_ID for Brazilian Portuguese is "br"; imports from b_user carry it.
_ALIASES = {"br": "pt"}
_PLAIN_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " "})
# address_linked may go out as an SMS, so its time is written in the shorter, medium form.
_SHORT_TIME_TEMPLATES = frozenset({"address_linked"})


@dataclass(frozen=True)
class Rendered:
    subject: str  # "" for SMS
    body: str


def _normalise(lang: str | None) -> str | None:
    """'pt-BR', 'pt_BR', 'PT', 'br' -> 'pt'; anything outside the five languages -> None."""
    if not lang or not isinstance(lang, str):
        return None
    primary = lang.strip().lower().replace("_", "-").split("-")[0]
    primary = _ALIASES.get(primary, primary)
    return primary if primary in LANGS else None


def pick_lang(account_lang: str | None, default_lang: str) -> str:
    """The account's language if it is one of the five, else the configured default, else English."""
    return _normalise(account_lang) or _normalise(default_lang) or "en"


@cache
def _catalog(lang: str) -> dict:
    import tomllib
    from importlib.resources import files

    with files(__package__).joinpath(f"{lang}.toml").open("rb") as fh:
        catalog = tomllib.load(fh)
    for name in (*TEMPLATES, "common"):
        if not isinstance(catalog.get(name), dict):
            raise RuntimeError(f"message catalog {lang}.toml lacks the [{name}] table")
    return catalog


def _duration(seconds: int, lang: str) -> str:
    """Exact, in the reader's words: 600 -> '10 minutes', 86400 -> '24 hours', 30 days -> '30 days'.

    The unit is the largest one that divides the duration (days only from two days up, since
    "24 hours" reads better than "1 day"); passing the count as babel's threshold makes every
    larger unit fall short of it, so babel lands on exactly that unit and picks the plural form.
    """
    from datetime import timedelta

    from babel.dates import format_timedelta

    total = int(seconds)
    if total <= 0:
        raise ValueError(f"a validity period must be positive, got {total} seconds")
    for unit, smallest in ((86400, 2 * 86400), (3600, 3600), (60, 60), (1, 1)):
        if total % unit == 0 and total >= smallest:
            break
    return format_timedelta(timedelta(seconds=total), threshold=total // unit, locale=lang)


def _datetime(epoch: int, lang: str, width: str) -> str:
    """A UTC moment in the locale's own date order, to the minute, labelled UTC.

    babel's 'long' datetime carries seconds; this joins the locale's date pattern of `width` with
    its short time pattern through the locale's own date-time glue pattern.
    """
    from datetime import datetime, timezone

    from babel import Locale
    from babel.dates import format_datetime, get_datetime_format

    locale = Locale.parse(lang)
    pattern = (
        str(get_datetime_format(width, locale))
        .replace("{1}", locale.date_formats[width].pattern)
        .replace("{0}", locale.time_formats["short"].pattern + " z")
    )
    moment = datetime.fromtimestamp(int(epoch), timezone.utc)
    text = format_datetime(moment, pattern, tzinfo=timezone.utc, locale=locale)
    # CLDR puts (narrow) no-break spaces in "2:13 PM" and "2026 г."; one such character turns a
    # whole SMS into UCS-2 (70 characters a segment) and old mail clients show it as a box.
    return text.translate(_PLAIN_SPACES)


class _Values(dict):
    """Placeholder values, computed on first use; a missing parameter is a ValueError."""

    def __init__(self, template: str, lang: str, params: dict, common: dict):
        super().__init__()
        self._template, self._lang, self._params, self._common = template, lang, params, common

    def _param(self, name: str):
        try:
            return self._params[name]
        except KeyError:
            raise ValueError(f"message {self._template!r} needs the parameter {name!r}") from None

    def __missing__(self, key: str) -> str:
        lang = self._lang
        if key == "validity":
            value = _duration(self._param("ttl_seconds"), lang)
        elif key == "until":
            value = _datetime(self._param("expires_at"), lang, "long")
        elif key == "when":
            width = "medium" if self._template in _SHORT_TIME_TEMPLATES else "long"
            value = _datetime(self._param("changed_at"), lang, width)
        elif key == "greeting":
            name = str(self._params.get("name") or "").strip()
            value = self._common["greeting"].format_map({"name": name}) if name else self._common["greeting_anonymous"]
        elif key == "footer":
            value = self._common["footer"].format_map(self)
        else:
            value = str(self._param(key))
        self[key] = value
        return value


def render(template: str, lang: str, params: dict) -> Rendered:
    """Fill one template in one language. Only the placeholders the text names are read from
    `params`, so an extra key (a password, say) can never leak into a message."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown message template {template!r}; known: {', '.join(TEMPLATES)}")
    if lang not in LANGS:
        raise ValueError(f"unsupported message language {lang!r}; use pick_lang() to choose one of {', '.join(LANGS)}")
    catalog = _catalog(lang)
    entry = catalog[template]
    values = _Values(template, lang, params, catalog["common"])
    subject = entry.get("subject", "").format_map(values)
    body = entry["body"].format_map(values)
    # A subject is one header line: no value may break it.
    return Rendered(subject=" ".join(subject.split()), body=body.strip())
