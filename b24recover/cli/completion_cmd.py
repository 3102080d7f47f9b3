"""`completion bash|zsh|fish`: the shell completion script. Completing itself runs through
typer's `_B24RECOVER_COMPLETE` protocol (see __main__), so no other command pays for it."""

from __future__ import annotations

import typer

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_B24RECOVER_COMPLETE"


def completion(
    shell: str = typer.Argument(..., metavar="bash|zsh|fish", help="The shell to print the script for."),
):
    """Print the shell completion script for commands, subcommands and options.

    Examples:

    \b
      b24recover completion bash > b24recover.bash   # then source it from ~/.bashrc
      b24recover completion zsh > _b24recover        # into a folder on $fpath
      b24recover completion fish > b24recover.fish   # into ~/.config/fish/completions/
    """
    from ..errors import B24Error

    if shell not in SHELLS:
        raise B24Error("usage", f"the shell must be one of {', '.join(SHELLS)}")
    from typer._completion_shared import get_completion_script

    typer.echo(get_completion_script(prog_name="b24recover", complete_var=COMPLETE_VAR, shell=shell))
