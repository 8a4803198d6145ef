"""The `sketchloop` command as a user runs it: a fresh Python process, its output captured."""

import subprocess
import sys


def cli(*args: str, cwd=None, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sketchloop.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
