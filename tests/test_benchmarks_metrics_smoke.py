"""Smoke test of benchmarks/metrics_conversion.py: the quick SQLite run completes, checks
conversion() against the generated events and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "metrics_conversion.py"


def test_metrics_conversion_benchmark_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backend", "sqlite"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    assert "generated 20,000 deals" in out, out
    for column in ("scan floor s", "conversion s", "ratio", "CLI s", "peak RSS MB"):
        assert column in out, out
    row = next(line for line in out.splitlines() if line.startswith("sqlite "))
    assert "floor" in row and "<3 s" in row and "<300 MB" in row, row
    assert "conversion cpu s" in out, out
    # The whole document was checked against an independent model of the generated events,
    # and the CLI printed the same JSON.
    assert "agrees with the generated events (the whole document" in out, out
    assert "the CLI printed the same JSON" in out, out
