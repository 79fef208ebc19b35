"""Start-up time of the `tpt` command: the commands that need no TensorFlow against the 2 s
target, and a command that does against TensorFlow's own import, alternating in one run.

    .venv/bin/python benchmarks/startup.py [--rounds 3]

Every row is a fresh process (wall seconds, median of the rounds). The TensorFlow command is
``tpt evaluate`` on a folder that does not exist: it imports TensorFlow (and sets its devices up)
before it reads anything, then stops with its one-line error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from host import host_line  # noqa: E402  (benchmarks/host.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTL_AQA = os.path.join(REPO, os.pardir, "shared", "data", "MTL-AQA")


def rows() -> dict[str, list[str]]:
    tpt = [sys.executable, "-m", "tpt_keras.cli"]
    commands = {
        "tpt --help (no TensorFlow)": [*tpt, "--help"],
        "tpt train --help (no TensorFlow)": [*tpt, "train", "--help"],
    }
    if os.path.isdir(MTL_AQA):
        commands["tpt data-info --dataset mtl_aqa (no TensorFlow)"] = [
            *tpt, "data-info", "--dataset", "mtl_aqa", "--annotations", MTL_AQA]
    commands["python -c 'import tensorflow, keras' (reference)"] = [
        sys.executable, "-c", "import tensorflow, keras"]
    commands["tpt evaluate <missing folder> (TensorFlow, then the error)"] = [
        *tpt, "evaluate", os.path.join(REPO, "no-such-run")]
    return commands


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    commands = rows()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    times = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, capture_output=True)
            times[name].append(time.perf_counter() - start)
    print(host_line(tensorflow=False))
    print(f"# wall seconds per fresh process, medians of {args.rounds} alternating rounds")
    print()
    print("| command | s | target |")
    print("|---|---|---|")
    reference = statistics.median(times["python -c 'import tensorflow, keras' (reference)"])
    for name, values in times.items():
        seconds = statistics.median(values)
        if "no TensorFlow" in name:
            target = f"< 2 s: {'met' if seconds < 2 else 'NOT met'}"
        elif "then the error" in name:
            target = f"{seconds / reference:.2f}x TensorFlow's import"
        else:
            target = "-"
        print(f"| {name} | {seconds:.2f} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
