"""`[audit] syslog = true`: every audit event also goes to the local syslog (journald reads the
same socket), a copy outside the store that someone who can rewrite the store cannot take back.

One line per event, sent after its transaction committed: `audit {json}` with the event's id,
time, actor, action, login, details and chain hash (never a secret: audit details hold none).
Facility authpriv, as for sudo and sshd: the lines name accounts and addresses.
"""

from __future__ import annotations

import json

IDENT = "b24recover"
_opened = False


def send(event: dict) -> None:
    import syslog

    global _opened
    if not _opened:
        syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_AUTHPRIV)
        _opened = True
    # JSON escapes control characters, so a stored value cannot forge a second log line.
    syslog.syslog(syslog.LOG_INFO, "audit " + json.dumps(event, ensure_ascii=True, sort_keys=True,
                                                         separators=(",", ":")))
