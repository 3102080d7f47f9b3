"""Every command is documented in docs/cli.md and has --help with an example."""

from __future__ import annotations

from pathlib import Path

import typer.main
from typer.testing import CliRunner

from b24recover.cli.app import app

DOC = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")


def command_paths(group, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from command_paths(command, path)
        else:
            yield path


def test_every_command_is_documented_and_has_an_example():
    paths = list(command_paths(typer.main.get_command(app)))
    assert len(paths) >= 20
    runner = CliRunner()
    for path in paths:
        assert f"## b24recover {' '.join(path)}\n" in DOC, f"docs/cli.md lacks {' '.join(path)}"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, f"{' '.join(path)} --help has no example"
