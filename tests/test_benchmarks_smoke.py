"""Smoke test of benchmarks/deal_commands.py: the quick run completes and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "deal_commands.py"


def test_deal_commands_benchmark_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    assert "command" in out and "p50 ms" in out and "p95 ms" in out and "max ms" in out
    for label in ("bare Bolt ack with answer", "/deal show #id", "/deal advance #id"):
        assert f"{label} (answered)" in out, out
        assert f"{label} (ack only)" in out, out
    assert "p50 ratio ours/bare" in out
    assert "peak RSS" in out
    assert "target show" in out and "target advance" in out
