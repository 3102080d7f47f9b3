"""`lookup` and `token request` answered without typer give exactly typer's answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, add_user


def run(argv, db_path, config_path, plain_globals: bool):
    globals_ = (["--db", str(db_path), "--config", str(config_path)] if plain_globals
                else [f"--db={db_path}", f"--config={config_path}"])  # typer's path
    stdin = b"0123456789abcdefghijklmnopqrstuv\nsome new passphrase 1\n"  # a wrong control string
    done = subprocess.run([sys.executable, "-m", "b24recover", *globals_, *argv], capture_output=True, cwd=ROOT,
                          input=stdin)
    return done.returncode, done.stdout, done.stderr


CASES = [
    ["lookup", "anna@example.com", "--json"],
    ["lookup", "--json", "8 (912) 345-67-89"],
    ["lookup", "anna"],
    ["lookup", "Ivanova", "--by", "name", "--json"],
    ["lookup", "nobody@example.com", "--json"],
    ["lookup", "nobody"],
    ["lookup", "anna", "--by", "nonsense", "--json"],
    ["lookup", "a\x01b", "--json"],
    ["token", "request", "anna@example.com", "--json"],
    ["token", "request", "nobody"],
    ["redeem", "anna", "--control-string-stdin", "--password-stdin", "--json"],
    ["redeem", "nobody", "--json", "--control-string-stdin", "--password-stdin"],
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def populated(request, tmp_path_factory):
    """One store for the module, on each engine (PostgreSQL: a schema of the session's database)."""
    from conftest import PgTestURL

    base = tmp_path_factory.mktemp("fast")
    db_path, config_path = base / "b24.db", base / "b24recover.toml"
    config_path.write_text("[hashing]\nbcrypt_rounds = 4\n[tokens]\nresend_interval = \"1s\"\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        if request.param == "postgresql":
            server = request.getfixturevalue("pg_server")
            schema = server.new_schema()
            env.setenv("PGOPTIONS", f"-c search_path={schema},public")  # the CLI's children inherit it
            db_path = PgTestURL(server.url, config_path)
        _populate(db_path, config_path)
        yield db_path, config_path
    if request.param == "postgresql":
        server.drop_schema(schema)


def _populate(db_path, config_path):
    from typer.testing import CliRunner

    from b24recover.cli.app import app
    from conftest import Run

    def cli(*args, input=None):
        r = CliRunner().invoke(app, ["--db", str(db_path), "--config", str(config_path), *args], input=input)
        return Run(r.exit_code, r.stdout, r.stderr)

    assert cli("init").exit_code == 0
    add_user(cli, "anna", "--email", "anna@example.com", "--phone", "+79123456789", "--name", "Anna",
             "--last-name", "Ivanova")


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) for c in CASES])
def test_same_answer_with_and_without_typer(populated, argv):
    db_path, config_path = populated
    fast = run(argv, db_path, config_path, plain_globals=True)
    slow = run(argv, db_path, config_path, plain_globals=False)
    assert fast == slow
    assert b"Traceback" not in fast[2]


def test_fast_path_does_not_import_typer(populated):
    db_path, config_path = populated
    code = ("import sys; from b24recover.__main__ import main; "
            f"rc = main(['--db', {str(db_path)!r}, '--config', {str(config_path)!r}, 'lookup', 'anna', '--json']); "
            "print('typer' in sys.modules, rc, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, text=True)
    assert done.stderr.strip().splitlines()[-1] == "False 0"
    help_ = subprocess.run([sys.executable, "-m", "b24recover", "lookup", "--help"], capture_output=True,
                           cwd=ROOT, text=True)
    assert help_.returncode == 0 and "Example" in help_.stdout


def test_redeem_fast_path_sets_the_password(populated):
    import json

    db_path, config_path = populated
    issued = run(["token", "issue", "anna", "--via", "none", "--force", "--json"], db_path, config_path, True)
    secret = json.loads(issued[1])["link"].split("USER_CHECKWORD=")[1].split("&")[0]
    argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path),
            "redeem", "anna", "--control-string-stdin", "--password-stdin", "--json"]
    done = subprocess.run(argv, input=f"{secret}\nfast path passphrase 9\n".encode(), capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["password_changed"] is True


# What the contract says each case answers (SPEC §2), so the two paths are not only compared with
# each other: (exit code, error code or None, logins found or None).
EXPECTED = {
    "lookup anna@example.com --json": (0, None, ["anna"]),
    "lookup --json 8 (912) 345-67-89": (0, None, ["anna"]),
    "lookup Ivanova --by name --json": (0, None, ["anna"]),
    "lookup nobody@example.com --json": (3, "not_found", None),
    "lookup anna --by nonsense --json": (2, "usage", None),
    "token request anna@example.com --json": (0, None, None),
    "redeem anna --control-string-stdin --password-stdin --json": (6, "control_string_incorrect", None),
    "redeem nobody --json --control-string-stdin --password-stdin": (6, "control_string_incorrect", None),
}


@pytest.mark.parametrize("plain_globals", [True, False], ids=["fast", "typer"])
@pytest.mark.parametrize("case", list(EXPECTED))
def test_answers_are_the_contracts(populated, case, plain_globals):
    import json

    argv = next(c for c in CASES if " ".join(c) == case)
    code, stdout, stderr = run(argv, *populated, plain_globals=plain_globals)
    exit_code, error, logins = EXPECTED[case]
    assert code == exit_code, stderr
    if error:
        assert json.loads(stderr.strip().splitlines()[-1])["error"]["code"] == error
    if logins is not None:
        assert [m["login"] for m in json.loads(stdout)["matches"]] == logins
