"""The demo that `make demo` runs works from a clean directory and leaves its state behind."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_order_demo_runs_and_leaves_state_in_dot_baton(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "orders.py", tmp_path / "orders.py")
    done = subprocess.run(
        [sys.executable, "orders.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "DEAD at step ship after 3 attempts" in done.stdout
    assert "redriven" in done.stdout
    assert "every order charged exactly once: True" in done.stdout
    db = sqlite3.connect(tmp_path / ".baton" / "baton.db")
    statuses = db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
    assert statuses == [("SUCCEEDED", 3)]
    kinds = {t for (t,) in db.execute("SELECT DISTINCT type FROM events")}
    assert {"baton.step.retrying", "baton.run.dead", "baton.run.redriven"} <= kinds
    assert (tmp_path / ".baton" / "baton.log").read_text().count('"correlation_id"') > 0
