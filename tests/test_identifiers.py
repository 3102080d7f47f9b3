"""Identifiers: phone numbers and emails as people really write them, the keys accounts are
matched on, and lookup through the CLI (by phone, email, login and full-text name search)."""

from __future__ import annotations

import pytest

from b24recover.errors import B24Error
from b24recover.services import identifiers as ids
from conftest import add_user

# (as typed, default region of the tool, E.164). Region is where an operator would be sitting:
# a number without +country is read in that country's national format.
PHONES = [
    # Russia: trunk prefix 8, every separator style in use
    ("8 (912) 345-67-89", "RU", "+79123456789"),
    ("+7 912 345 67 89", "RU", "+79123456789"),
    ("8-912-345-67-89", "RU", "+79123456789"),
    ("+7(912)3456789", "RU", "+79123456789"),
    ("89123456789", "RU", "+79123456789"),
    ("+7 (912) 345-67-89", "RU", "+79123456789"),
    ("8.912.345.67.89", "RU", "+79123456789"),
    (" +7 912 345 67 89 ", "RU", "+79123456789"),
    ("+7\u00a0912\u00a0345-67-89", "RU", "+79123456789"),  # non-breaking spaces, pasted from a web page
    ("8 912 345\u201367\u201389", "RU", "+79123456789"),  # en dashes, as a word processor writes them
    ("\uff0b\uff17 \uff19\uff11\uff12 \uff13\uff14\uff15 \uff16\uff17 \uff18\uff19", "RU", "+79123456789"),  # full-width (IME)
    ("8 800 555-35-35", "RU", "+78005553535"),
    # Germany: trunk 0, the "(0)" convention, the 00 international prefix
    ("030 1234567", "DE", "+49301234567"),
    ("+49 (0)30 1234567", "DE", "+49301234567"),
    ("0049 30 1234567", "DE", "+49301234567"),
    ("+49 30 1234567", "RU", "+49301234567"),
    ("+49 (0)30 1234567", "RU", "+49301234567"),
    # Italy: the leading zero of the area code is part of the number
    ("06 1234 5678", "IT", "+390612345678"),
    ("+39 06 1234 5678", "RU", "+390612345678"),
    # Portugal
    ("912 345 678", "PT", "+351912345678"),
    ("+351 912 345 678", "RU", "+351912345678"),
    # USA
    ("(415) 555-2671", "US", "+14155552671"),
    ("+1 415-555-2671", "RU", "+14155552671"),
    ("1-415-555-2671", "US", "+14155552671"),
    ("415.555.2671", "US", "+14155552671"),
    ("011 44 20 7946 0958", "US", "+442079460958"),
    # United Kingdom
    ("020 7946 0958", "GB", "+442079460958"),
    ("+44 20 7946 0958", "RU", "+442079460958"),
    ("+44 (0)20 7946 0958", "RU", "+442079460958"),
    # Brazil
    ("+55 11 91234-5678", "RU", "+5511912345678"),
    ("(11) 91234-5678", "BR", "+5511912345678"),
    # France
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("+33 1 23 45 67 89", "RU", "+33123456789"),
]


@pytest.mark.parametrize("text,region,e164", PHONES)
def test_normalize_phone_gives_e164(text, region, e164):
    assert ids.normalize_phone(text, region) == e164


@pytest.mark.parametrize("text,region,e164", PHONES)
def test_phone_lookup_key_agrees_with_normalize_phone(text, region, e164):
    # The lookup fast path must find exactly what `user add` stored for the same spelling.
    assert ids.looks_like_phone(text)
    assert ids.phone_lookup_key(text, region) == ids.normalize_phone(text, region) == e164


def test_enough_spellings_and_countries():
    assert len(PHONES) >= 20
    assert {e164[:3] for _, _, e164 in PHONES} >= {"+79", "+78", "+49", "+39", "+35", "+14", "+44", "+55", "+33"}


EXTENSIONS = ["+1 415 555 2671 ext. 123", "(415) 555-2671 ext. 123", "+1 415 555 2671 x123",
              "+7 912 345-67-89 доб. 12"]


@pytest.mark.parametrize("text", EXTENSIONS)
def test_number_with_an_extension_is_refused(text):
    # Decision: an SMS cannot reach an extension, and silently dropping it would store a
    # different identifier than the one given (two people at one switchboard would collide).
    with pytest.raises(B24Error) as err:
        ids.normalize_phone(text, "US")
    assert err.value.code == "invalid_phone"
    assert ids.phone_lookup_key(text, "US") is None


INVALID_PHONES = [
    ("12345", "invalid_phone"),                   # too short
    ("+7 912 345 67 8", "invalid_phone"),         # one digit missing
    ("+7 912 345 67 890", "invalid_phone"),       # one digit too many
    ("abc", "invalid_phone"),                     # letters
    ("+7 912 ABC 67 89", "invalid_phone"),        # letters inside a number: never a keypad spelling
    ("+7 912 345 67 89 // Anna", "invalid_phone"),
    ("+0 123 456 789", "invalid_phone"),          # no such country code
    ("+7 000 000 00 00", "invalid_phone"),
    ("0049 30 1234567", "invalid_phone"),         # 00 is not Russia's international prefix
    ("+7 912\x00345 67 89", "invalid_input"),     # NUL byte
    ("1" * 1000, "invalid_input"),                # 1000 digits
    ("", "invalid_phone"),
]


@pytest.mark.parametrize("text,code", INVALID_PHONES)
def test_invalid_phone_numbers(text, code):
    with pytest.raises(B24Error) as err:
        ids.normalize_phone(text, "RU")
    assert err.value.code == code
    assert err.value.exit_code == 5


def test_looks_like_phone():
    assert ids.looks_like_phone("+7 912 345-67-89")
    assert ids.looks_like_phone("(415) 555-2671")
    assert not ids.looks_like_phone("anna")
    assert not ids.looks_like_phone("anna@example.com")
    assert not ids.looks_like_phone("1234")           # a PIN or a year, not a phone
    assert not ids.looks_like_phone("1" * 40)


# ---- email ------------------------------------------------------------------------------------

def test_email_keys_are_case_insensitive():
    display, key = ids.normalize_email("Anna@Example.COM")
    assert key == ids.normalize_email("anna@example.com")[1] == "anna@example.com"
    assert display.split("@")[1] == "example.com"  # the domain is case-insensitive by definition
    for typed in ("anna@example.com", "ANNA@EXAMPLE.COM", " Anna@Example.Com "):
        assert ids.email_lookup_key(typed) == key


@pytest.mark.parametrize("address,equivalent", [
    ("пользователь@пример.рф", "Пользователь@ПРИМЕР.РФ"),
    ("josé@exämple.de", "José@Exämple.DE"),
    ("josé@exämple.de", "jose\u0301@exa\u0308mple.de"),  # decomposed accents (NFD), as macOS writes them
    ("user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"),     # punycode domain
    ("user@xn--e1afmkfd.xn--p1ai", "USER@пример.рф"),
])
def test_internationalised_emails_match(address, equivalent):
    key = ids.normalize_email(address)[1]
    assert ids.normalize_email(equivalent)[1] == key
    assert ids.email_lookup_key(equivalent) == key
    assert ids.email_lookup_key(address) == key


def test_punycode_is_stored_in_unicode():
    assert ids.normalize_email("user@xn--e1afmkfd.xn--p1ai")[0] == "user@пример.рф"


@pytest.mark.parametrize("text,codes", [
    ("no-at-sign", {"invalid_email"}),
    ("a@b", {"invalid_email"}),
    ("a@@b.com", {"invalid_email"}),
    ("anna@example.com.", {"invalid_email"}),
    ("anna@", {"invalid_email"}),
    ("@example.com", {"invalid_email"}),
    ("anna @example.com", {"invalid_email"}),
    ("a" * 388 + "@example.com", {"invalid_email", "invalid_input"}),  # 400 characters
    ("an\x00na@example.com", {"invalid_input"}),
    ("anna@example.com\n", {"invalid_input"}),
])
def test_invalid_emails(text, codes):
    with pytest.raises(B24Error) as err:
        ids.normalize_email(text)
    assert err.value.code in codes
    assert err.value.exit_code == 5


def test_email_lookup_key_of_things_that_are_not_addresses():
    assert ids.email_lookup_key("no-at-sign") is None
    assert ids.email_lookup_key("a@@b.com") is None
    assert ids.email_lookup_key("an\x00na@example.com") is None


def test_looks_like_email():
    assert ids.looks_like_email("anna@example.com")
    assert ids.looks_like_email(" пользователь@пример.рф ")
    assert not ids.looks_like_email("anna")
    assert not ids.looks_like_email("+7 912 345-67-89")


# ---- logins, social identities, free text ---------------------------------------------------

def test_login_key_folds_case_and_unicode_form():
    assert ids.login_key("Anna") == ids.login_key("ANNA") == ids.login_key("anna")
    assert ids.login_key("José") == ids.login_key("jose\u0301")
    assert ids.login_key("Иванова") == ids.login_key("ИВАНОВА")
    assert ids.login_key("anna") != ids.login_key("anna2")


@pytest.mark.parametrize("login", ["", "   ", " anna", "anna ", "an\x00na", "an\nna", "a" * 256])
def test_bad_logins(login):
    with pytest.raises(B24Error) as err:
        ids.validate_login(login)
    assert err.value.code == "invalid_input"


@pytest.mark.parametrize("text,expected", [
    ("google:1234567890", ("google", "1234567890")),
    ("Google:1234567890", ("google", "1234567890")),
    ("vkontakte: 123 ", ("vkontakte", "123")),
    ("yandex:Anna.Ivanova", ("yandex", "Anna.Ivanova")),
    ("openid:https://id.example.com/anna", ("openid", "https://id.example.com/anna")),
])
def test_parse_social(text, expected):
    assert ids.parse_social(text) == expected


@pytest.mark.parametrize("text", ["google", ":123", "google:", "google:  ", "goo gle:1", "gоogle:1",
                                  "google:1\x002", "x" * 600])
def test_parse_social_refuses(text):
    with pytest.raises(B24Error) as err:
        ids.parse_social(text)
    assert err.value.code == "invalid_input"


def test_clean_text():
    assert ids.clean_text(None, "the name") == ""
    assert ids.clean_text("Jose\u0301", "the name") == "José"  # stored in NFC
    assert ids.clean_text("Анна-Мария O'Neil", "the name") == "Анна-Мария O'Neil"
    for bad in ("a\x00b", "a\x1b[31mb", "a\u2028b", "a\x7fb", "x" * 256):
        with pytest.raises(B24Error) as err:
            ids.clean_text(bad, "the name")
        assert err.value.code == "invalid_input"
    with pytest.raises(B24Error):
        ids.clean_text("   ", "the login", allow_empty=False)


# ---- through the CLI --------------------------------------------------------------------------

def _logins(run) -> list[str]:
    assert run.exit_code == 0, run.stderr
    return sorted(m["login"] for m in run.json["matches"])


def test_add_with_local_spelling_lookup_with_international(store):
    add_user(store, "anna", "--phone", "8 (912) 345-67-89")
    assert store("user", "show", "anna", "--json").json["phone"] == "+79123456789"
    for typed in ("+7 912 345 67 89", "+7(912)3456789", "89123456789", "8-912-345-67-89", "+79123456789"):
        assert _logins(store("lookup", typed, "--json")) == ["anna"], typed
        assert _logins(store("lookup", typed, "--by", "phone", "--json")) == ["anna"], typed


def test_add_with_international_spelling_lookup_with_local(store):
    add_user(store, "boris", "--phone", "+7 913 111-22-33")
    for typed in ("8 (913) 111-22-33", "89131112233", "8.913.111.22.33"):
        assert _logins(store("lookup", typed, "--json")) == ["boris"], typed


def test_default_country_decides_local_spellings(store, config_path):
    config_path.write_text('default_country = "DE"\n[hashing]\nbcrypt_rounds = 4\n', encoding="utf-8")
    add_user(store, "hans", "--phone", "030 1234567")
    assert store("user", "show", "hans", "--json").json["phone"] == "+49301234567"
    for typed in ("+49 30 1234567", "+49 (0)30 1234567", "0049 30 1234567", "030/1234567"):
        assert _logins(store("lookup", typed, "--json")) == ["hans"], typed


def test_the_same_number_in_another_spelling_is_a_conflict(store):
    add_user(store, "anna", "--phone", "8 (912) 345-67-89")
    r = store("user", "add", "anna2", "--phone", "+7 912 345 67 89", "--password-stdin", "--json",
              input="correct horse battery staple\n")
    assert r.exit_code == 4 and r.error["code"] == "conflict" and "anna" in r.error["message"]


def test_email_lookup_is_case_insensitive(store):
    add_user(store, "anna", "--email", "Anna@Example.COM")
    add_user(store, "ivan", "--email", "пользователь@пример.рф")
    add_user(store, "jose", "--email", "user@xn--e1afmkfd.xn--p1ai")
    assert _logins(store("lookup", "anna@example.com", "--json")) == ["anna"]
    assert _logins(store("lookup", "ANNA@EXAMPLE.COM", "--by", "email", "--json")) == ["anna"]
    assert _logins(store("lookup", "Пользователь@ПРИМЕР.РФ", "--json")) == ["ivan"]
    assert _logins(store("lookup", "user@пример.рф", "--json")) == ["jose"]
    assert _logins(store("lookup", "user@xn--e1afmkfd.xn--p1ai", "--by", "email", "--json")) == ["jose"]


def test_lookup_by_login(store):
    add_user(store, "Anna.Ivanova", "--email", "anna@example.com")
    assert _logins(store("lookup", "anna.ivanova", "--by", "login", "--json")) == ["Anna.Ivanova"]
    assert _logins(store("lookup", "ANNA.IVANOVA", "--json")) == ["Anna.Ivanova"]
    r = store("lookup", "anna@example.com", "--by", "login", "--json")
    assert r.exit_code == 3 and r.error["code"] == "not_found"


def test_lookup_by_kind_refuses_what_cannot_be_that_kind(store):
    add_user(store, "anna", "--email", "anna@example.com", "--name", "Anna")
    r = store("lookup", "Anna", "--by", "phone", "--json")
    assert r.exit_code == 5 and r.error["code"] == "invalid_phone"
    r = store("lookup", "Anna", "--by", "email", "--json")
    assert r.exit_code == 5 and r.error["code"] == "invalid_email"
    r = store("lookup", "Anna", "--by", "telepathy", "--json")
    assert r.exit_code == 2


def test_lookup_by_name_full_text(store):
    add_user(store, "u1", "--name", "Anna", "--last-name", "Ivanova")
    add_user(store, "u2", "--name", "Мария", "--last-name", "Иванова")
    add_user(store, "u3", "--name", "José", "--last-name", "García")
    add_user(store, "u4", "--name", "Peter", "--last-name", "Smith")
    assert _logins(store("lookup", "Ivan", "--by", "name", "--json")) == ["u1"]
    assert _logins(store("lookup", "Ivanova", "--json")) == ["u1"]            # auto falls back to names
    assert _logins(store("lookup", "Иванова", "--json")) == ["u2"]
    assert _logins(store("lookup", "иван", "--by", "name", "--json")) == ["u2"]  # Cyrillic prefix, any case
    assert _logins(store("lookup", "Jose", "--json")) == ["u3"]               # without the accent
    assert _logins(store("lookup", "garcia", "--by", "name", "--json")) == ["u3"]
    assert _logins(store("lookup", "José García", "--by", "name", "--json")) == ["u3"]
    assert _logins(store("lookup", "Anna Ivan", "--json")) == ["u1"]          # every word must match
    r = store("lookup", "Ivanov Peter", "--json")
    assert r.exit_code == 3 and r.error["code"] == "not_found"


def test_lookup_name_search_tolerates_fts_syntax(store):
    add_user(store, "u1", "--name", "Anna", "--last-name", "Ivanova")
    # FTS operators are plain words: quotes, *, ^ and - are dropped, and every word (OR, NEAR too)
    # must match a name as a prefix; so each query has one right answer.
    expected = {'"Anna': ["u1"], "Anna*": ["u1"], "^Anna": ["u1"], "Anna -Ivanova": ["u1"],
                "Anna OR": None, "NEAR(Anna)": None}
    for query, logins in expected.items():
        r = store("lookup", query, "--by", "name", "--json")
        assert "Traceback" not in r.stderr
        if logins is None:
            assert r.exit_code == 3 and r.error["code"] == "not_found", (query, r.stderr)
        else:
            assert r.exit_code == 0 and _logins(r) == logins, (query, r.stderr)


def test_the_spelling_used_at_add_finds_the_account(store):
    # A number pasted from a document (en dashes) must be found by the very same text.
    typed = "8 912 345\u201367\u201389"
    add_user(store, "anna", "--phone", typed)
    assert store("user", "show", "anna", "--json").json["phone"] == "+79123456789"
    assert _logins(store("lookup", typed, "--json")) == ["anna"]
