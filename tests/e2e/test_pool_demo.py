"""``make pool-demo`` as a user runs it: the module in a subprocess, its verdict and its story."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_pool_demo_fills_hands_out_and_refills(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fleet_demo.pool_demo", "--workdir", str(tmp_path / "pool")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "The pool filled to 5 ready instances" in out and out.rstrip().endswith("POOL DEMO OK")
    allocations = re.findall(r"^  (project-\d+)\s+HTTP (\d+)\s+[\d.]+ s  (i-[0-9a-f]+)$", out, re.M)
    assert len(allocations) == 8 and {code for _, code, _ in allocations} == {"201"}
    assert len({instance for _, _, instance in allocations}) == 8
    # The shortage was answered with claimed + buffer, the booting ones counted: never more.
    assert "Scaling to: 10 (claimed 5 + buffer 5" in out
    scalings = re.findall(r"Scaling to: (\d+) \(claimed (\d+) \+ buffer 5", out)
    assert scalings and all(int(to) == min(int(claimed) + 5, 20) for to, claimed in scalings)
    assert "(asset_triggered)" in out
    # The group never holds more than it was asked for (retiring ones are on their way out).
    statuses = re.findall(
        r"status: total (\d+), idle \d+, booting \d+, used \d+, retiring (\d+), desired (\d+)", out
    )
    assert statuses and all(int(t) - int(r) <= int(d) for t, r, d in statuses), (
        statuses
    )  # the API asked for reconciles, besides the minute's
