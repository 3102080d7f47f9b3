"""Calls run once a write transaction has committed: shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations


class AfterCommit:
    _on_commit: list

    def on_commit(self, call) -> None:
        """Run `call` once the current write transaction has committed (never if it rolls back)."""
        self._on_commit.append(call)

    def _forget_commit_calls(self) -> None:
        self._on_commit = []

    def _after_commit(self) -> None:
        calls, self._on_commit = self._on_commit, []
        for call in calls:
            try:
                call()
            except Exception:  # a copy elsewhere (syslog) never undoes or fails what committed
                pass
