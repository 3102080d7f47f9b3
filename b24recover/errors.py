"""The one place where error codes and exit codes are defined (SPEC §2)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BUG = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    INVALID = 5
    REFUSED = 6
    THROTTLED = 7
    STORE = 8
    DELIVERY = 9
    CHECK_FOUND = 10
    INTERRUPTED = 130


# error code -> (exit code, default hint)
ERROR_CODES: dict[str, tuple[ExitCode, str]] = {
    "usage": (ExitCode.USAGE, "See --help for the accepted options."),
    "not_found": (ExitCode.NOT_FOUND, "Check the spelling, or search with 'b24recover lookup'."),
    "blocked": (ExitCode.CONFLICT, "Unblock the account first: b24recover user unblock LOGIN."),
    "conflict": (ExitCode.CONFLICT, "Each email, phone and login may belong to one account only."),
    "no_email": (ExitCode.CONFLICT, "Add or link an email: b24recover link LOGIN --email ADDRESS."),
    "no_phone": (ExitCode.CONFLICT, "Add or link a phone: b24recover link LOGIN --phone NUMBER."),
    "pending_link": (ExitCode.CONFLICT, "Confirm the pending address by redeeming the control string sent to it."),
    "invalid_email": (ExitCode.INVALID, "Write the address as name@example.com."),
    "invalid_phone": (ExitCode.INVALID, "Write the number with its country code, e.g. +7 912 345-67-89."),
    "invalid_input": (ExitCode.INVALID, "Correct the input and run the command again."),
    "input_required": (
        ExitCode.INVALID,
        "Give the secret on standard input (--password-stdin / --control-string-stdin) "
        "or name an environment variable (--password-env VAR).",
    ),
    "control_string_incorrect": (ExitCode.REFUSED, "Check the control string, or request a new one."),
    "control_string_superseded": (
        ExitCode.REFUSED,
        "Several reset requests were sent and an outdated link was used: "
        "follow the link in the most recent message.",
    ),
    "control_string_expired": (ExitCode.REFUSED, "Request a new control string."),
    "control_string_used": (ExitCode.REFUSED, "This control string was already used; request a new one."),
    "control_string_revoked": (ExitCode.REFUSED, "This control string was revoked; request a new one."),
    "too_many_attempts": (ExitCode.REFUSED, "Request a new code."),
    "password_policy": (ExitCode.REFUSED, "Choose a password that meets the policy: b24recover policy show."),
    "password_mismatch": (ExitCode.REFUSED, "Type the same new password twice."),
    "password_incorrect": (ExitCode.REFUSED, "Check the current password, or use 'forgot password'."),
    "throttled": (ExitCode.THROTTLED, "Wait and try again later."),
    "recovery_paused": (
        ExitCode.REFUSED,
        "Too many wrong control strings or codes for this account: wait until the pause ends, "
        "or an operator runs: b24recover token revoke LOGIN.",
    ),
    "external_account": (
        ExitCode.CONFLICT,
        "This account signs in through an external directory (e.g. LDAP); recover it there.",
    ),
    "portal_unavailable": (ExitCode.STORE, "Check [portal] dsn and password_env, and that the portal database is up."),
    "portal_write_failed": (
        ExitCode.DELIVERY,
        "The change is kept locally and stays queued; retry with: b24recover portal push.",
    ),
    "store_locked": (ExitCode.STORE, "Another process holds the store; try again in a moment."),
    "store_missing": (ExitCode.STORE, "Create the store first: b24recover init (or check --db / B24RECOVER_DB)."),
    "store_too_new": (ExitCode.STORE, "Upgrade b24recover to a version that knows this schema."),
    "store_outdated": (ExitCode.STORE, "Upgrade the store: b24recover init."),
    "store_corrupt": (ExitCode.STORE, "Restore the store from a backup (see docs/operations.md)."),
    "delivery_failed": (ExitCode.DELIVERY, "The message stays in the outbox; retry with: b24recover outbox send."),
    "check_found": (ExitCode.CHECK_FOUND, ""),
    "config_invalid": (ExitCode.INVALID, "Fix the configuration file; every key and its default: b24recover config show --defaults."),
    "store_unsafe": (ExitCode.STORE, "The store must be a regular file of yours that only you can read: chmod 600 it, "
                                     "or run 'b24recover init'."),
    "unsafe_file": (ExitCode.INVALID, "Use a real file or folder of yours that only you can read (0600 / 0700)."),
    "key_missing": (ExitCode.STORE, "Restore the key file beside the store, or set B24RECOVER_SECRET."),
}


class B24Error(Exception):
    """A domain error: a stable code, a message for people and a hint on what to do next."""

    def __init__(self, code: str, message: str, hint: str | None = None, **details):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = ERROR_CODES[code][1] if hint is None else hint
        self.details = details

    @property
    def exit_code(self) -> ExitCode:
        return ERROR_CODES[self.code][0]

    def to_json(self) -> dict:
        body = {"code": self.code, "message": self.message, "hint": self.hint}
        body.update(self.details)
        return {"error": body}
