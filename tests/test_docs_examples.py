"""Every example in README.md, docs/*.md and every --help text runs as written.

Each shell block (```sh / ```bash) and each example line of a --help text runs with bash
(`set -euo pipefail`) in its own copy of a scratch directory, and fails the test when it exits
non-zero (or with another code than its marker names) or does not print what its marker expects.
Each ```toml block must be a config that `config show` accepts.

The scratch directory (see `scratch_template`):
  - `b24recover` on PATH and `.venv/bin/b24recover` both run this checkout;
  - `examples/` is a copy of the repository's;
  - `./b24recover.db` is a store with examples/users.csv imported, `anna.ivanova` has the
    password "$OLD" and an active recovery link whose control string is "$CW" (issued two
    hours earlier, so the resend throttle has passed);
  - `./b24recover.toml` only lowers bcrypt's cost (speed);
  - $PW and $NEW hold policy-compliant passwords.

Markers (HTML comments, invisible when rendered) on the lines just before a block:
  <!-- docs-check: skip REASON -->   not run (needs root, a server or a secret); the reason is shown
  <!-- docs-check: fresh -->         run in an empty directory (no store, no config), as on a fresh clone
  <!-- docs-check: exit N -->        the block must exit N
  <!-- docs-check: expect TEXT -->   stdout or stderr must contain TEXT
In --help texts, an example line whose comment starts with "# at a terminal" needs a person at a
keyboard, and one whose comment starts with "# needs a portal" needs a portal database ([portal]
dsn); both are skipped with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("sh", "bash", "shell", "console")
OLD = "Old passphrase for the docs check"
PW = "A passphrase for the docs check"
NEW = "Another new passphrase, long enough"
MARKER = re.compile(r"<!--\s*docs-check:\s*(\w+)\s*(.*?)\s*-->")
TERMINAL = "# at a terminal"
PORTAL = "# needs a portal"


@dataclass
class Example:
    where: str
    kind: str  # "sh" or "toml"
    text: str
    skip: str | None = None
    fresh: bool = False
    exit: int = 0
    expect: list[str] = field(default_factory=list)


def _markers(lines: list[str], fence: int) -> list[tuple[str, str]]:
    """The docs-check markers on the lines just above the fence (blank lines between allowed)."""
    found, i = [], fence - 1
    while i >= 0 and (not lines[i].strip() or MARKER.fullmatch(lines[i].strip())):
        m = MARKER.fullmatch(lines[i].strip())
        if m:
            found.append((m.group(1), m.group(2)))
        i -= 1
    return found


def doc_examples() -> list[Example]:
    out = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = re.fullmatch(r"```(\w+)\s*", lines[i])
            if not m:
                i += 1
                continue
            lang, start = m.group(1), i
            i += 1
            body = []
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            i += 1
            kind = "sh" if lang in SHELLS else lang
            if kind not in ("sh", "toml"):
                continue
            ex = Example(f"{path.relative_to(ROOT)}:{start + 1}", kind, "\n".join(body) + "\n")
            for name, arg in _markers(lines, start):
                if name == "skip":
                    assert arg, f"{ex.where}: a skip marker needs a reason"
                    ex.skip = arg
                elif name == "fresh":
                    ex.fresh = True
                elif name == "exit":
                    ex.exit = int(arg)
                elif name == "expect":
                    ex.expect.append(arg)
                else:
                    raise AssertionError(f"{ex.where}: unknown docs-check marker {name!r}")
            out.append(ex)
    return out


def command_paths(group, prefix=()):
    """(path, is_group) for every command and group below `group`."""
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path, hasattr(command, "commands")
        if hasattr(command, "commands"):
            yield from command_paths(command, path)


GROUPS: set[str] = {"b24recover"}


def help_texts() -> dict[str, str]:
    import typer.main
    from typer.testing import CliRunner

    from b24recover.cli.app import app

    runner = CliRunner()
    texts = {"b24recover": runner.invoke(app, ["--help"], terminal_width=80).stdout}
    for path, is_group in command_paths(typer.main.get_command(app)):
        if is_group:
            GROUPS.add("b24recover " + " ".join(path))
        result = runner.invoke(app, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        texts["b24recover " + " ".join(path)] = result.stdout
    return texts


def help_example_lines(text: str) -> list[str]:
    """The lines of the Examples: section of a --help text, one command per line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s*Examples?:\s*", line):
            found = []
            for nxt in lines[i + 1:]:
                if not nxt.strip():
                    if found:
                        break
                    continue
                if not nxt.startswith(" "):
                    break
                found.append(nxt.strip())
            return found
    return []


def help_examples() -> list[Example]:
    out = []
    for command, text in help_texts().items():
        for n, line in enumerate(help_example_lines(text), start=1):
            ex = Example(f"{command} --help, example {n}", "sh", line + "\n")
            for mark, default in ((TERMINAL, "needs a terminal"), (PORTAL, "needs a portal database")):
                if mark in line:
                    ex.skip = line.split(mark, 1)[1].strip(" :") or default
            out.append(ex)
    return out


ALL = doc_examples() + help_examples()


def _wrapper(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "b24recover"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m b24recover "$@"\n')
    script.chmod(0o755)


def _base_dir(where: Path) -> None:
    _wrapper(where / ".venv" / "bin")
    shutil.copytree(ROOT / "examples", where / "examples")


def _env(where: Path, cw: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24RECOVER_", "XDG_CONFIG"))}
    env.update(PATH=f"{where / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(where),
               XDG_CONFIG_HOME=str(where / ".config"), PW=PW, NEW=NEW, OLD=OLD, CW=cw,
               PYTHONPATH=str(ROOT), COLUMNS="100", NO_COLOR="1")
    return env


@pytest.fixture(scope="module")
def scratch_template(tmp_path_factory):
    """The scratch directory every example gets its own copy of; returns (path, CW)."""
    import json
    import time

    from typer.testing import CliRunner

    from b24recover.cli.app import app
    from b24recover.cli.runtime import Globals
    from b24recover.clock import FixedClock

    where = tmp_path_factory.mktemp("docs-scratch")
    _base_dir(where)
    (where / "b24recover.toml").write_text("[hashing]\nbcrypt_rounds = 4\n", encoding="utf-8")
    db, config = str(where / "b24recover.db"), str(where / "b24recover.toml")
    clock = FixedClock(int(time.time()) - 7200)  # two hours ago: throttles have passed since
    runner = CliRunner()

    def run(*args, input=None):
        result = runner.invoke(app, ["--db", db, "--config", config, *args], input=input,
                               obj=Globals(db=db, config=config, actor="docs-check", clock=clock))
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    run("init")
    run("user", "import", str(where / "examples" / "users.csv"))
    run("reset", "anna.ivanova", "--password-stdin", "--no-notify", input=OLD + "\n")
    link = json.loads(run("token", "issue", "anna.ivanova", "--via", "none", "--json"))["link"]
    cw = re.search(r"USER_CHECKWORD=([0-9a-z]{32})", link).group(1)
    return where, cw


def _scratch(template: tuple[Path, str], tmp_path: Path, fresh: bool) -> Path:
    where = tmp_path / "work"
    if fresh:
        where.mkdir()
        _base_dir(where)
    else:
        shutil.copytree(template[0], where, symlinks=True)
    return where


@pytest.mark.parametrize("example", ALL, ids=[e.where for e in ALL])
def test_example_runs_as_written(example: Example, scratch_template, tmp_path):
    if example.skip:
        pytest.skip(f"{example.where}: {example.skip}")
    where = _scratch(scratch_template, tmp_path, example.fresh)
    env = _env(where, scratch_template[1])
    if example.kind == "toml":
        (where / "doc.toml").write_text(example.text, encoding="utf-8")
        argv = ["bash", "-c", "b24recover --config doc.toml config show"]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", example.text]
    done = subprocess.run(argv, cwd=where, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == example.exit, (
        f"{example.where}: exit {done.returncode}, expected {example.exit}\n{example.text}\n{output}")
    for text in example.expect:
        assert text in output, f"{example.where}: output lacks {text!r}\n{example.text}\n{output}"
    assert "Traceback" not in output, f"{example.where}\n{output}"


def test_every_help_has_copyable_examples():
    for command, text in help_texts().items():
        if command in GROUPS:
            continue
        lines = help_example_lines(text)
        assert lines, f"{command} --help has no Examples: section"
        for line in lines:
            assert "b24recover" in line, f"{command} --help: {line!r} is not a command"
            assert not line.rstrip().endswith((";", "\\")), f"{command} --help: {line!r} is joined or wrapped"


def test_markers_are_recognised():
    """A planted example with each marker parses as documented (guards the parser itself)."""
    lines = ["<!-- docs-check: skip needs root -->", "", "```sh", "sudo true", "```"]
    assert _markers(lines, 2) == [("skip", "needs root")]
    assert help_example_lines("Examples:\n\n  b24recover a\n  b24recover b\n\nOptions:\n") == [
        "b24recover a", "b24recover b"]
