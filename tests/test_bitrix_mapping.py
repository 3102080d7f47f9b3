"""services/bitrix.py: one Bitrix row -> an account or the reason it cannot be one (SPEC §4)."""

from __future__ import annotations

import hashlib

import pytest

from b24recover.errors import B24Error
from b24recover.services import bitrix

MD5 = hashlib.md5(b"pw").hexdigest()


def row(**extra):
    return {"LOGIN": "anna", "ACTIVE": "Y", "BLOCKED": "N", "EXTERNAL_AUTH_ID": None, "PASSWORD": MD5, **extra}


@pytest.mark.parametrize("auth, kind, external", [
    (None, "internal", None), ("", "internal", None), ("  ", "internal", None),
    ("socservices", "social", None), ("LDAP#1", "external", "LDAP#1"), ("bot", "external", "bot"),
    ("email", "external", "email"), ("imconnector", "external", "imconnector"),
])
def test_kinds(auth, kind, external):
    acc = bitrix.map_row(row(EXTERNAL_AUTH_ID=auth))
    assert (acc.kind, acc.external) == (kind, external)
    assert (acc.password_hash is not None) == (kind == "internal")   # others' PASSWORD is ignored


def test_sign_in_phone_prefers_phone_auth_and_keeps_personal_phone_as_profile():
    acc = bitrix.map_row(row(PHONE_NUMBER="+79120000001", PERSONAL_PHONE="+7 (343) 222-33-44"))
    assert (acc.phone, acc.phone_from_profile, acc.profile_phone) == ("+79120000001", False, "+7 (343) 222-33-44")
    acc = bitrix.map_row(row(PERSONAL_PHONE="8 912 345-67-89"))
    assert (acc.phone, acc.phone_from_profile) == ("+79123456789", True)
    assert acc.without_sign_in_phone().phone is None
    acc = bitrix.map_row(row(PERSONAL_PHONE="доб. 123"))
    assert (acc.phone, acc.profile_phone) == (None, "доб. 123")
    # Bitrix texts an E.164 PHONE_NUMBER as it is, even one the number plan calls invalid now.
    assert bitrix.map_row(row(PHONE_NUMBER="+79990000000")).phone == "+79990000000"


def test_names_are_cleaned_and_emails_follow_bitrix():
    acc = bitrix.map_row(row(NAME="Анна\t\u202eМария\u200b", LAST_NAME="Smith\r\nJr.", EMAIL="A@Portal.LOCAL"))
    assert (acc.name, acc.last_name) == ("Анна Мария", "Smith Jr.")
    assert acc.email == "A@portal.local" and acc.email_key == "a@portal.local"
    assert bitrix.map_row(row(EMAIL="x@corp.invalid")).email == "x@corp.invalid"
    with pytest.raises(B24Error) as err:
        bitrix.map_row(row(EMAIL="not an address"))
    assert err.value.code == "invalid_email"


def test_state_language_id_and_social():
    assert bitrix.map_row(row(ACTIVE="N")).blocked is True
    assert bitrix.map_row(row(BLOCKED="Y")).blocked is True
    assert bitrix.map_row(row()).blocked is False
    assert bitrix.map_row({"LOGIN": "x"}).blocked is None
    assert bitrix.map_row(row(LANGUAGE_ID="br")).lang == "pt"
    assert bitrix.map_row(row(LANGUAGE_ID="ua")).lang is None
    assert bitrix.map_row(row(ID="17")).portal_id == 17
    acc = bitrix.map_row(row(EXTERNAL_AUTH_ID="socservices", LOGIN="VK_1", XML_ID="1", SOCIAL_PROVIDER="VKontakte"))
    assert acc.social == (("vkontakte", "1"),)
    assert bitrix.map_row(row(EXTERNAL_AUTH_ID="socservices", LOGIN="VK_1")).social == (("socservices", "VK_1"),)


@pytest.mark.parametrize("bad, reason", [
    ({"LOGIN": ""}, "login"), ({"LOGIN": " anna"}, "spaces"), ({"ID": "x1"}, "ID must be a number"),
    ({"ACTIVE": "maybe"}, "ACTIVE"), ({"PASSWORD": "$6$rounds=5000$abc$" + "a" * 86}, "rounds"),
    ({"PASSWORD": "short"}, "lower-case hex"),
])
def test_refusals_say_why(bad, reason):
    with pytest.raises(B24Error) as err:
        bitrix.map_row(row(**bad))
    assert reason in err.value.message


def test_external_accounts_are_refused_naming_their_manager():
    assert bitrix.external_error({"login": "anna", "external": None}) is None
    err = bitrix.external_error({"login": "anna", "external": "LDAP#1"})
    assert err.code == "external_account" and "LDAP" in err.message
