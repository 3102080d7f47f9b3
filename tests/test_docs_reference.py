"""docs/reference.md is the project's own contract: every error code, config key and command
the code knows must be in it, so adding one without documenting it fails here."""

from __future__ import annotations

from pathlib import Path

import typer.main

from b24recover.cli.app import app
from b24recover.cli.config_cmd import effective_settings
from b24recover.config import Settings
from b24recover.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
CLI = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def test_every_error_code_with_its_exit_code():
    for code, (exit_code, _) in ERROR_CODES.items():
        assert f"| `{code}` | {int(exit_code)} |" in REFERENCE, f"docs/reference.md lacks error code {code}"


def test_every_config_key_with_its_default():
    import json

    for key, item in effective_settings(Settings(), defaults=True).items():
        value = json.dumps(item["value"], ensure_ascii=False)
        assert f"| `{key}` | `{value}` |" in REFERENCE, f"docs/reference.md lacks config key {key} = {value}"


def _leaf_commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def test_every_command_in_the_reference_and_in_cli_md():
    for path in _leaf_commands(typer.main.get_command(app)):
        assert f"`{path}" in REFERENCE, f"docs/reference.md lacks the command {path}"
        assert f"## b24recover {path}\n" in CLI, f"docs/cli.md lacks a section for {path}"


def test_readme_stands_alone():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../" not in readme, "README.md points outside the repository"
    assert "docs/reference.md" in readme


def test_every_option_and_argument_has_help_and_a_plain_placeholder():
    from typer.testing import CliRunner

    def walk(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))
            else:
                yield (*prefix, name), command

    root = typer.main.get_command(app)
    for path, command in walk(root):
        for param in command.params:
            assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help text"
        text = CliRunner().invoke(app, [*path, "--help"]).stdout
        usage = text.splitlines()[0]
        assert "{" not in usage and "<" not in usage, f"{' '.join(path)}: usage shows {usage!r}"
