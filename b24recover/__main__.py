"""Entry point: `b24recover` and `python -m b24recover`."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Everything we create (store, key, outbox, --out files) is private to the owner.
    os.umask(0o077)
    args = sys.argv[1:] if argv is None else argv
    from .cli.fast import try_fast

    code = try_fast(args)
    if code is not None:
        return code
    from .cli.app import command_named, make_app
    from .cli.guard import Globals

    try:
        # A whole process of its own: `token request` may deliver in a detached step (cli/portal.py).
        make_app(only=command_named(args))(args=args, prog_name="b24recover",
                                           obj=Globals(db="", config=None, actor=None, detach=True))
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


if __name__ == "__main__":
    sys.exit(main())
