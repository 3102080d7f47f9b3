"""`make demo` teaches: each command is shown before its output, lookups are labelled, mail is
shown decoded, and the expected failure is the only one. Runs examples/demo.sh in a copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_reads_like_a_tutorial(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "b24recover"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m b24recover "$@"\n')
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24RECOVER_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(["bash", str(tmp_path / "examples" / "demo.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert '$ b24recover lookup "8 (912) 345-67-89"' in out
    assert "# by a phone number written the local Russian way" in out
    assert "Subject: Восстановление пароля" in out and "=?utf-8?" not in out.lower()
    assert "(exit 6, as expected)" in out
    assert "$ b24recover config show" in out
    import re

    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert len(commands) >= 15
    assert not any(re.search(r"\b[0-9a-z]{32}\b", line) for line in commands)  # secrets shown as names
