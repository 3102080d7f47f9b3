"""The PHP serialize reader (b_group.SECURITY_POLICY), group policies and the portal DSN."""

from __future__ import annotations

import pytest

from b24recover.errors import B24Error
from b24recover.portal import grouppolicy
from b24recover.portal.dsn import parse_dsn
from b24recover.portal.phpser import PhpSerializeError, loads

# A Bitrix group policy as PHP's serialize() writes it (lengths are byte counts).
BITRIX_POLICY = ('a:14:{s:15:"SESSION_TIMEOUT";s:2:"30";s:15:"SESSION_IP_MASK";s:15:"255.255.255.255";'
                 's:13:"MAX_STORE_NUM";s:1:"1";s:13:"STORE_IP_MASK";s:15:"255.255.255.255";'
                 's:13:"STORE_TIMEOUT";s:4:"4320";s:17:"CHECKWORD_TIMEOUT";s:2:"60";'
                 's:15:"PASSWORD_LENGTH";s:2:"10";s:18:"PASSWORD_UPPERCASE";s:1:"Y";'
                 's:18:"PASSWORD_LOWERCASE";s:1:"Y";s:15:"PASSWORD_DIGITS";s:1:"Y";'
                 's:20:"PASSWORD_PUNCTUATION";s:1:"N";s:14:"LOGIN_ATTEMPTS";s:1:"3";'
                 's:20:"PASSWORD_CHANGE_DAYS";s:2:"90";s:21:"PASSWORD_UNIQUE_COUNT";s:1:"3";}')


def test_scalars_and_arrays():
    assert loads("N;") is None
    assert loads("b:1;") is True and loads("b:0;") is False
    assert loads("i:-42;") == -42
    assert loads("d:0.5;") == 0.5 and loads("d:INF;") == float("inf")
    assert loads('s:0:"";') == ""
    assert loads('a:2:{i:0;s:1:"a";s:1:"k";a:1:{i:5;N;}}') == {0: "a", "k": {5: None}}


def test_string_lengths_are_bytes_in_the_portal_charset():
    assert loads('s:12:"Пароль";') == "Пароль"              # 6 letters, 12 UTF-8 bytes
    assert loads('s:6:"Пароль";', "windows-1251") == "Пароль"
    with pytest.raises(PhpSerializeError):
        loads('s:6:"Пароль";')                                 # 6 bytes cut a UTF-8 letter
    # A quote inside a string is fine: the length, not the quote, ends it.
    assert loads('s:5:"a";b:";') == 'a";b:'


@pytest.mark.parametrize("text", [
    'O:8:"stdClass":1:{s:1:"a";i:1;}',          # an object
    'a:1:{i:0;O:8:"stdClass":0:{}}',            # an object inside an array
    'C:11:"ArrayObject":21:{x:i:0;a:0:{};m:a:0:{}}',
    'E:7:"Foo:Bar";',                           # an enum
    'a:2:{i:0;i:1;i:1;R:2;}',                   # a reference
    'a:1:{i:0;r:1;}',
])
def test_objects_enums_and_references_are_refused(text):
    with pytest.raises(PhpSerializeError, match="refused"):
        loads(text)


@pytest.mark.parametrize("text", [
    "", "x", "i:1", "i:1;junk", "b:2;", 'i:1e3;', 's:5:"abc";', 's:-1:"";', 's:3:"abc"', 'a:2:{i:0;i:1;}',
    'a:1:{a:0:{}i:1;}', 'a:1:{d:1.5;i:1;}', "a:1:{" * 40 + "i:0;i:0;" + "}" * 40, "d:abc;",
])
def test_malformed_values_are_refused(text):
    with pytest.raises(PhpSerializeError):
        loads(text)


def test_a_real_bitrix_policy():
    rules = grouppolicy.parse(BITRIX_POLICY)
    assert rules == {"CHECKWORD_TIMEOUT": 60, "PASSWORD_LENGTH": 10, "PASSWORD_UNIQUE_COUNT": 3,
                     "PASSWORD_CHANGE_DAYS": 90, "PASSWORD_UPPERCASE": True, "PASSWORD_LOWERCASE": True,
                     "PASSWORD_DIGITS": True, "PASSWORD_PUNCTUATION": False}


def test_the_strictest_group_wins_rule_by_rule():
    everyone = grouppolicy.parse('a:3:{s:17:"CHECKWORD_TIMEOUT";i:2880;s:15:"PASSWORD_LENGTH";i:6;'
                                 's:15:"PASSWORD_DIGITS";s:1:"N";}')
    admins = grouppolicy.parse('a:3:{s:17:"CHECKWORD_TIMEOUT";s:2:"60";s:15:"PASSWORD_LENGTH";s:1:"8";'
                               's:15:"PASSWORD_DIGITS";s:1:"Y";}')
    loose = grouppolicy.parse('a:2:{s:17:"CHECKWORD_TIMEOUT";i:9999;s:15:"PASSWORD_LENGTH";i:1;}')
    combined = grouppolicy.strictest([everyone, admins, loose])
    assert combined["CHECKWORD_TIMEOUT"] == 60      # shortest
    assert combined["PASSWORD_LENGTH"] == 8         # longest
    assert combined["PASSWORD_DIGITS"] is True      # any group requiring it
    assert grouppolicy.strictest([loose, admins, everyone]) == combined  # order does not matter


def test_an_unreadable_policy_leaves_the_other_groups_rules():
    assert grouppolicy.parse('O:8:"stdClass":0:{}') == {}
    assert grouppolicy.parse("garbage") == {} and grouppolicy.parse(None) == {}
    assert grouppolicy.parse('a:1:{s:17:"CHECKWORD_TIMEOUT";s:3:"abc";}') == {}
    assert grouppolicy.parse('a:1:{s:17:"CHECKWORD_TIMEOUT";i:0;}') == {}  # 0 is "not set" to Bitrix


def test_dsn_forms():
    d = parse_dsn("mysql://bitrix@db.example.com/sitemanager")
    assert (d.engine, d.user, d.host, d.port, d.database) == ("mysql", "bitrix", "db.example.com", 3306, "sitemanager")
    d = parse_dsn("postgresql://b24@10.0.0.5:6432/portal")
    assert (d.engine, d.port, d.database) == ("postgresql", 6432, "portal")
    assert parse_dsn("mariadb://u@h/d").engine == "mysql"


@pytest.mark.parametrize("dsn", ["mysql://bitrix:s3cret-PW@db/sitemanager", "postgresql://u:s3cret-PW@h:5432/d",
                                 "mysql://u:s3cret-PW@h:notaport/d"])
def test_a_password_in_the_dsn_is_refused_and_never_repeated(dsn):
    with pytest.raises(B24Error) as info:
        parse_dsn(dsn)
    assert info.value.code == "config_invalid"
    assert "s3cret-PW" not in info.value.message + info.value.hint


@pytest.mark.parametrize("dsn", ["sqlite:///x.db", "mysql://db/sitemanager", "mysql://u@/d", "mysql://u@h/",
                                 "mysql://u@h/d?ssl=1", "mysql://u@h:70000/d"])
def test_malformed_dsns(dsn):
    with pytest.raises(B24Error) as info:
        parse_dsn(dsn)
    assert info.value.code == "config_invalid"


def test_no_driver_is_imported_unless_a_command_connects(tmp_path):
    """A store with a portal configured still answers lookup without PyMySQL or psycopg2."""
    import subprocess
    import sys

    config = tmp_path / "b24recover.toml"
    config.write_text('[portal]\ndsn = "mysql://bitrix@127.0.0.1:1/portal"\n', encoding="utf-8")
    db = tmp_path / "s.db"
    probe = ("import sys\nfrom b24recover.__main__ import main\nsys.argv = ['b24recover', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('pymysql', 'psycopg2') if m in sys.modules))")
    base = [sys.executable, "-c", probe, "--db", str(db), "--config", str(config)]
    assert subprocess.run([*base, "init"], capture_output=True).returncode == 0
    lookup = subprocess.run([*base, "lookup", "anna"], capture_output=True, text=True)
    assert lookup.stdout.strip().splitlines()[-1] == "[]"
    status = subprocess.run([*base, "portal", "status"], capture_output=True, text=True)
    assert status.stdout.strip().splitlines()[-1] == "['pymysql']"   # connecting needs it
