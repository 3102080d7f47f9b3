"""Shared fixtures: a fresh store under tmp_path, bcrypt cost 4, a fixed clock, and two ways
to run the CLI (in-process with CliRunner, or as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from b24recover.cli.app import app
from b24recover.cli.runtime import Globals
from b24recover.clock import FixedClock

ROOT = Path(__file__).resolve().parent.parent
GOOD_PASSWORD = "correct horse battery staple"


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def error(self) -> dict:
        return json.loads(self.stderr.strip().splitlines()[-1])["error"]


@pytest.fixture
def clock():
    return FixedClock(1_790_000_000)


@pytest.fixture
def config_path(tmp_path) -> Path:
    path = tmp_path / "b24recover.toml"
    path.write_text(
        'portal_url = "https://portal.example.com"\n'
        'default_country = "RU"\n'
        "[hashing]\nbcrypt_rounds = 4\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "b24.db"


@pytest.fixture
def cli(db_path, config_path, clock, monkeypatch):
    """Run the CLI in-process: cli("user", "add", ..., input="...") -> Run."""
    monkeypatch.delenv("B24RECOVER_SECRET", raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None) -> Run:
        argv = ["--db", str(db_path), "--config", str(config_path), *args]
        result = runner.invoke(app, argv, input=input, env=env,
                               obj=Globals(db=str(db_path), config=str(config_path), actor=None, clock=clock))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def store(cli):
    """An initialised store."""
    assert cli("init").exit_code == 0
    return cli


@pytest.fixture
def proc(db_path, config_path):
    """Run the CLI as a real subprocess, exactly as an operator or a portal would."""

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 60) -> Run:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
        full_env.update(env or {})
        argv = [sys.executable, "-m", "b24recover", "--db", str(db_path), "--config", str(config_path), *args]
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(argv, input=data, capture_output=True, env=full_env, timeout=timeout, cwd=ROOT)
        return Run(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))

    return run


def add_user(cli, login: str, *extra: str, password: str = GOOD_PASSWORD) -> Run:
    result = cli("user", "add", login, *extra, "--password-stdin", input=password + "\n")
    assert result.exit_code == 0, result.stderr
    return result
