"""Entry point: `b24recover` and `python -m b24recover`."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Everything we create (store, key, outbox, --out files) is private to the owner. Each file
    # is also created with its exact mode, so this is a second line of defence (tests run
    # `run` under a permissive umask to prove it).
    os.umask(0o077)
    return run(sys.argv[1:] if argv is None else argv)


def run(args: list[str]) -> int:
    """The command line, under whatever umask the process has."""
    from .cli.fast import try_fast

    code = try_fast(args)
    if code is not None:
        return code
    from .cli.app import command_named, make_app
    from .cli.guard import Globals

    if "_B24RECOVER_COMPLETE" in os.environ:  # a shell asks for completions (b24recover completion SHELL)
        from typer._completion_classes import completion_init

        completion_init()

    import typer

    try:
        # A whole process of its own: `token request` may deliver in a detached step (cli/portal.py).
        code = make_app(only=command_named(args))(args=args, prog_name="b24recover", standalone_mode=False,
                                                  obj=Globals(db="", config=None, actor=None, detach=True))
        return code if isinstance(code, int) else 0
    except typer.exceptions.TyperException as exc:  # usage errors (exit 2), JSON too with --json
        return _usage_error(exc, args)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # a bug outside any command; one line, no locals
        if os.environ.get("B24RECOVER_DEBUG") == "1":
            raise
        sys.stderr.write(f"unexpected error ({type(exc).__name__}): {exc}\n")
        return 1
    return 0


def _usage_error(exc, args: list[str]) -> int:
    if "--json" in args or any(a in ("--format", "-o") and b == "json" for a, b in zip(args, args[1:])):
        from .cli.render import error
        from .errors import B24Error

        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "b24recover"
        error(B24Error("usage", exc.format_message(), hint=f"See: {where} --help"), True)
    elif hasattr(exc, "show"):
        exc.show()
    else:
        sys.stderr.write(f"error: {exc.format_message()}\n")
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
