"""Message texts: every template in every language, babel durations and times, language choice,
and the rules that keep secrets and stray braces out of what people receive."""

from __future__ import annotations

import re
import string
import subprocess
import sys
import time
import tomllib
from importlib.resources import files

import pytest

from b24recover.messages import TEMPLATES, Rendered, pick_lang, render

LANGS = ("en", "ru", "de", "it", "pt")
SMS_ONLY = {"sms_code", "link_code"}
CHANGED_AT = 1_790_000_000  # 2026-09-21 14:13:20 UTC
EXPIRES_AT = CHANGED_AT + 86400
LINK = ("https://portal.example.com/auth/index.php?change_password=yes&lang=en"
        "&USER_CHECKWORD=0123456789abcdefghijklmnopqrstuv&USER_LOGIN=anna.petrova")


def params(template: str, **over) -> dict:
    base = {
        "portal_url": "https://portal.example.com",
        "portal_host": "portal.example.com",
        "sender": "no-reply@portal.example.com",
        "login": "anna.petrova",
        "name": "Anna",
        "link": LINK,
        "code": "482913",
        "ttl_seconds": 600 if template in SMS_ONLY else 86400,
        "expires_at": EXPIRES_AT,
        "changed_at": CHANGED_AT,
        "address": "+7 *** ***-**-89" if template == "address_linked" else "a***@example.com",
    }
    base.update(over)
    return base


# What each template must show the reader.
SHOWN = {
    "recovery_link": ("link", "login", "sender", "portal_host"),
    "sms_code": ("code", "portal_host"),
    "password_changed": ("login", "sender", "portal_host"),
    "link_confirm": ("link", "login", "address", "sender", "portal_host"),
    "link_code": ("code", "portal_host"),
    "address_linked": ("address", "login", "portal_host"),
}
TIMED = {"recovery_link", "password_changed", "link_confirm", "address_linked"}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_in_every_language(template, lang):
    p = params(template)
    r = render(template, lang, p)
    assert isinstance(r, Rendered)
    text = r.subject + "\n" + r.body
    assert "{" not in text and "}" not in text
    for key in SHOWN[template]:
        assert p[key] in r.body, key
    if template in TIMED:
        assert "UTC" in r.body
    if template in SMS_ONLY:
        assert r.subject == ""
        assert "\n" not in r.body
    else:
        assert r.subject and "\n" not in r.subject
    assert r.body == r.body.strip()


# Frequent small words of each language; a real text in that language uses several of them.
WORDS = {
    "en": {"the", "your", "to", "for", "on", "is", "was", "you", "this", "account", "password", "code"},
    "ru": {"на", "для", "вы", "вашей", "код", "пароль", "пароля", "адрес", "учётной", "записи", "не", "это", "этот"},
    "de": {"Sie", "Ihr", "Ihrem", "Ihren", "für", "auf", "ist", "wurde", "Passwort", "Konto", "Code", "gültig", "nicht"},
    "it": {"il", "la", "per", "su", "di", "tuo", "tua", "è", "codice", "account", "indirizzo", "valido", "non"},
    "pt": {"o", "a", "de", "em", "seu", "sua", "você", "é", "senha", "conta", "código", "endereço", "não"},
}
ENGLISH_ONLY = {"the", "your", "you", "was", "is", "for", "please", "this", "with"}


def words(text: str) -> set[str]:
    return set(re.findall(r"[^\W\d_]+", text))


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_text_is_in_the_readers_language(template, lang):
    r = render(template, lang, params(template))
    found = words(r.subject + " " + r.body)
    assert len(found & WORDS[lang]) >= 3, found
    if lang != "en":
        assert not found & ENGLISH_ONLY
    cyrillic = len(re.findall(r"[А-Яа-яЁё]", r.subject + r.body))
    if lang == "ru":
        assert cyrillic >= 40
        assert not r.subject or re.search(r"[А-Яа-яЁё]", r.subject)
    else:
        assert cyrillic == 0


# Phrases that carry the required content, per language.
MUST_SAY = {
    ("recovery_link", "en"): ("reset the password", "most recent", "ignore", "safe senders", "valid for"),
    ("recovery_link", "ru"): ("смену пароля", "последнего письма", "проигнорируйте", "надёжных отправителей", "срок действия"),
    ("recovery_link", "de"): ("zurückzusetzen", "neuesten", "ignorieren", "sicherer Absender", "gültig"),
    ("recovery_link", "it"): ("reimpostazione", "più recente", "ignora", "mittenti attendibili", "valido per"),
    ("recovery_link", "pt"): ("redefinir a senha", "mais recente", "ignorar", "remetentes confiáveis", "válido por"),
    ("password_changed", "en"): ("was changed", "administrator", "safe senders"),
    ("password_changed", "ru"): ("изменён", "администратором", "надёжных отправителей"),
    ("password_changed", "de"): ("geändert", "Administrator", "sicherer Absender"),
    ("password_changed", "it"): ("modificata", "amministratore", "mittenti attendibili"),
    ("password_changed", "pt"): ("alterada", "administrador", "remetentes confiáveis"),
    ("link_confirm", "en"): ("confirm", "social network", "most recent"),
    ("link_confirm", "ru"): ("подтвердить", "социальную сеть", "последнего письма"),
    ("link_confirm", "de"): ("Bestätigen", "soziales Netzwerk", "neuesten"),
    ("link_confirm", "it"): ("confermare", "social network", "più recente"),
    ("link_confirm", "pt"): ("confirmar", "rede social", "mais recente"),
    ("address_linked", "en"): ("sign-in address", "administrator"),
    ("address_linked", "ru"): ("адрес для входа", "администратору"),
    ("address_linked", "de"): ("Anmeldeadresse", "Administrator"),
    ("address_linked", "it"): ("indirizzo di accesso", "amministratore"),
    ("address_linked", "pt"): ("endereço de acesso", "administrador"),
    ("sms_code", "en"): ("Don't share",),
    ("sms_code", "ru"): ("Никому не сообщайте",),
    ("sms_code", "de"): ("an niemanden weiter",),
    ("sms_code", "it"): ("non condividerlo",),
    ("sms_code", "pt"): ("Não compartilhe",),
    ("link_code", "en"): ("phone number",),
    ("link_code", "ru"): ("номера",),
    ("link_code", "de"): ("Telefonnummer",),
    ("link_code", "it"): ("numero di telefono",),
    ("link_code", "pt"): ("número de telefone",),
}


@pytest.mark.parametrize(("template", "lang"), sorted(MUST_SAY))
def test_required_content(template, lang):
    body = render(template, lang, params(template)).body
    for phrase in MUST_SAY[template, lang]:
        assert phrase.lower() in body.lower(), phrase


TEN_MINUTES = {"en": "10 minutes", "ru": "10 минут", "de": "10 Minuten", "it": "10 minuti", "pt": "10 minutos"}
ONE_DAY = {"en": "24 hours", "ru": "24 часа", "de": "24 Stunden", "it": "24 ore", "pt": "24 horas"}
ONE_MINUTE = {"en": "1 minute", "ru": "1 минута", "de": "1 Minute", "it": "1 minuto", "pt": "1 minuto"}
THIRTY_DAYS = {"en": "30 days", "ru": "30 дней", "de": "30 Tage", "it": "30 giorni", "pt": "30 dias"}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("seconds", "expected"), [(600, TEN_MINUTES), (60, ONE_MINUTE)])
def test_code_validity_in_readers_language(lang, seconds, expected):
    body = render("sms_code", lang, params("sms_code", ttl_seconds=seconds)).body
    assert expected[lang] in body


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("seconds", "expected"), [(86400, ONE_DAY), (30 * 86400, THIRTY_DAYS)])
def test_link_validity_in_readers_language(lang, seconds, expected):
    body = render("recovery_link", lang, params("recovery_link", ttl_seconds=seconds)).body
    assert expected[lang] in body


@pytest.mark.parametrize(("seconds", "expected"), [
    (60, "1 минута"), (180, "3 минуты"), (660, "11 минут"), (1260, "21 минута"),
    (7200, "2 часа"), (18000, "5 часов"), (2 * 86400, "2 дня"), (5 * 86400, "5 дней"),
])
def test_russian_plural_forms(seconds, expected):
    assert f"Срок действия — {expected}." in render("sms_code", "ru", params("sms_code", ttl_seconds=seconds)).body


@pytest.mark.parametrize(("seconds", "expected"), [
    (90, "90 seconds"), (5400, "90 minutes"), (3600, "1 hour"), (36 * 3600, "36 hours"), (48 * 3600, "2 days"),
    (7 * 86400, "7 days"),
])
def test_durations_are_exact(seconds, expected):
    assert f"Valid for {expected}." in render("sms_code", "en", params("sms_code", ttl_seconds=seconds)).body


@pytest.mark.parametrize("ttl", [0, -60])
def test_non_positive_validity_is_refused(ttl):
    with pytest.raises(ValueError):
        render("sms_code", "en", params("sms_code", ttl_seconds=ttl))


UNTIL = {
    "en": "September 22, 2026, 2:13 PM UTC",
    "ru": "22 сентября 2026 г., 14:13 UTC",
    "de": "22. September 2026, 14:13 UTC",
    "it": "22 settembre 2026 14:13 UTC",
    "pt": "22 de setembro de 2026 14:13 UTC",
}
WHEN_SHORT = {
    "en": "Sep 21, 2026, 2:13 PM UTC",
    "ru": "21 сент. 2026 г., 14:13 UTC",
    "de": "21.09.2026, 14:13 UTC",
    "it": "21 set 2026, 14:13 UTC",
    "pt": "21 de set. de 2026 14:13 UTC",
}


@pytest.fixture
def tokyo(monkeypatch):
    """A local time zone far from UTC: the messages must not follow it."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("lang", LANGS)
def test_times_in_locale_format_and_utc(lang, tokyo):
    assert UNTIL[lang] in render("recovery_link", lang, params("recovery_link")).body
    assert UNTIL[lang] in render("link_confirm", lang, params("link_confirm")).body
    changed = render("password_changed", lang, params("password_changed", changed_at=EXPIRES_AT)).body
    assert UNTIL[lang] in changed
    assert WHEN_SHORT[lang] in render("address_linked", lang, params("address_linked")).body


@pytest.mark.parametrize(("account", "default", "expected"), [
    ("ru", "en", "ru"),
    ("de", "ru", "de"),
    (None, "it", "it"),
    ("", "pt", "pt"),
    ("fr", "de", "de"),
    ("fr", "xx", "en"),
    (None, "", "en"),
    ("RU", "en", "ru"),
    ("pt-BR", "en", "pt"),
    ("pt_PT", "en", "pt"),
    ("br", "en", "pt"),  # Bitrix's LANGUAGE_ID for Brazilian Portuguese
    ("ua", "en", "en"),
    ("fr", "DE", "de"),
])
def test_pick_lang(account, default, expected):
    assert pick_lang(account, default) == expected


@pytest.mark.parametrize("lang", LANGS)
def test_password_changed_never_shows_a_password(lang):
    secret = "Tr0ub4dor&3-horse"
    r = render("password_changed", lang, params("password_changed", password=secret, new_password=secret))
    assert secret not in r.subject and secret not in r.body


GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@pytest.mark.parametrize("template", ["sms_code", "link_code", "address_linked"])
def test_english_sms_fits_one_gsm7_segment(template):
    body = render(template, "en", params(template)).body
    assert len(body) <= 160
    assert set(body) <= GSM7


@pytest.mark.parametrize("lang", ["de", "it"])
@pytest.mark.parametrize("template", ["sms_code", "link_code"])
def test_latin_sms_codes_stay_in_gsm7(template, lang):
    """A single character outside GSM-7 (a typographic dash, a capital È) would switch the whole
    SMS to UCS-2 and cut a segment from 160 to 70 characters."""
    body = render(template, lang, params(template)).body
    assert len(body) <= 160
    assert set(body) <= GSM7


@pytest.mark.parametrize("lang", LANGS)
def test_values_are_substituted_once(lang):
    tricky = params("recovery_link", login="{login}{name}", name="{0} {sender!r}",
                    link=LINK + "&x={portal_host}", sender="{validity}@example.com")
    r = render("recovery_link", lang, tricky)
    assert "{login}{name}" in r.body
    assert "{0} {sender!r}" in r.body
    assert LINK + "&x={portal_host}" in r.body
    assert "{validity}@example.com" in r.body


@pytest.mark.parametrize(("lang", "named", "anonymous"), [
    ("en", "Hello Anna,", "Hello,"),
    ("ru", "Здравствуйте, Anna!", "Здравствуйте!"),
    ("de", "Hallo Anna,", "Hallo,"),
    ("it", "Ciao Anna,", "Ciao,"),
    ("pt", "Olá, Anna!", "Olá!"),
])
def test_greeting_with_and_without_a_name(lang, named, anonymous):
    assert render("password_changed", lang, params("password_changed")).body.startswith(named + "\n")
    for name in ("", "   "):
        body = render("password_changed", lang, params("password_changed", name=name)).body
        assert body.startswith(anonymous + "\n")


def test_subject_stays_one_header_line():
    r = render("recovery_link", "en", params("recovery_link", portal_host="portal.example.com\r\nBcc: x@evil.test"))
    assert "\r" not in r.subject and "\n" not in r.subject


def test_unknown_template_is_a_value_error():
    with pytest.raises(ValueError, match="unknown message template"):
        render("welcome", "en", params("recovery_link"))


def test_unsupported_language_is_a_value_error():
    with pytest.raises(ValueError, match="pick_lang"):
        render("sms_code", "fr", params("sms_code"))


def test_missing_parameter_is_named():
    p = params("recovery_link")
    del p["link"]
    with pytest.raises(ValueError, match="'link'"):
        render("recovery_link", "de", p)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("lang", LANGS[1:])
def test_catalogs_use_the_same_placeholders_as_english(lang):
    """A translation that drops {link} or invents {url} would fail only for its readers."""
    def load(code):
        return tomllib.loads(files("b24recover.messages").joinpath(f"{code}.toml").read_text(encoding="utf-8"))

    en, other = load("en"), load(lang)
    assert set(other) == set(en)
    for table in en:
        assert set(other[table]) == set(en[table]), table
        for key in en[table]:
            assert _fields(other[table][key]) == _fields(en[table][key]), (table, key)


def test_import_does_not_load_babel():
    code = "import sys, b24recover.messages; print('babel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
