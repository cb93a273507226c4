"""The examples run as documented (a few steps each: the full runs are in the docs)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_ppo_example_trains_and_writes_its_curve(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ppo_drive.py"), "--out", str(tmp_path),
                           "--steps", "512"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "before training: return" in proc.stdout and "after 512 steps: return" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "curve.csv")))
    assert len(rows) >= 3 and all(float(r["return"]) == float(r["return"]) for r in rows)  # finite returns
    assert Image.open(tmp_path / "curve.png").size == (640, 320) and (tmp_path / "model.zip").stat().st_size > 1000
