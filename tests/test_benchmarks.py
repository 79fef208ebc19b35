"""The benchmark scripts still run against the current code and compute their ratios right
(their figures are not asserted: speed belongs in the printed tables, not in tests)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # as a user runs it: the package decides
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table(output):
    rows = [line for line in output.splitlines() if line.startswith("| ") and "---" not in line]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")))) for row in rows[1:]]


def test_fit_benchmark_table():
    output = _run("train_step.py", "--fit", "--steps", "2", "--rounds", "1", "--batch", "4",
                  "--clips", "10")
    host = next(line for line in output.splitlines() if line.startswith("# host:"))
    assert "oneDNN on (TF_ENABLE_ONEDNN_OPTS=1)" in host  # set by the data package, imported first
    rows = _table(output)
    assert [row["what"] for row in rows] == [
        "compiled train function alone (same batches, in memory)",
        "model.fit, feature pipeline (autotuner off)",
        "model.fit + non-finite-loss callback (as tpt train)",
        "model.fit, autotuned pipeline (tf.data's default)"]
    reference = float(rows[0]["wall s"])
    for row in rows:  # the printed ratio lies within what the printed (rounded to 0.01) seconds allow
        wall, ratio = float(row["wall s"]), float(row["wall / step alone"])
        assert (wall - 0.005) / (reference + 0.005) - 0.005 <= ratio <= (wall + 0.005) / (reference - 0.005) + 0.005
    for row in rows[1:]:  # a median and a max, both seconds
        assert re.fullmatch(r"\d+\.\d\d \(\d+\.\d\d\)", row["fit's return after training ended, s (max)"])
