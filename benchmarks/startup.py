"""Start-up time of the `tpt` command: the commands that need no TensorFlow against the 2 s
target, every refusal that needs no tensor against the 1 s target (each refused before
TensorFlow is imported), and TensorFlow's own import for reference, alternating in one run.

    .venv/bin/python benchmarks/startup.py [--rounds 3]

Every row is a fresh process (wall seconds, median of the rounds); a refusal row also checks
that the command exited with status 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from host import host_line  # noqa: E402  (benchmarks/host.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTL_AQA = os.path.join(REPO, os.pardir, "shared", "data", "MTL-AQA")


def rows(scratch: str) -> dict[str, list[str]]:
    """Command lines by row name; files for the refusals are made in ``scratch``."""
    tpt = [sys.executable, "-m", "tpt_keras.cli"]
    commands = {
        "tpt --help (no TensorFlow)": [*tpt, "--help"],
        "tpt train --help (no TensorFlow)": [*tpt, "train", "--help"],
    }
    if os.path.isdir(MTL_AQA):
        commands["tpt data-info --dataset mtl_aqa (no TensorFlow)"] = [
            *tpt, "data-info", "--dataset", "mtl_aqa", "--annotations", MTL_AQA]
    locked = os.path.join(scratch, "locked")
    out = os.path.join(scratch, "run")
    train = [*tpt, "train", "synthetic", "--output", out]
    refusals = {
        "--set typo": [*train, "--set", "hiden_dim=3"],
        "--set bad value": [*train, "--set", "dropout=2"],
        "unknown preset": [*tpt, "train", "nonsense", "--output", out],
        "flag the preset does not read (--manifest)": [*train, "--manifest", "x.csv"],
        "missing manifest": [*tpt, "train", "custom", "--manifest", "no.csv", "--output", out],
        "missing annotation folder": [*tpt, "train", "mtl_aqa_dd", "--annotations", "none",
                                      "--output", out],
        "--epochs 0": [*train, "--epochs", "0"],
        "--per-replica-batch 0": [*train, "--per-replica-batch", "0"],
        "locked run folder": [*tpt, "train", "synthetic", "--output", locked],
        "evaluate <missing folder>": [*tpt, "evaluate", os.path.join(REPO, "no-such-run")],
    }
    for name, command in refusals.items():
        commands[f"refusal: {name}"] = command
    commands["python -c 'import tensorflow, keras' (reference)"] = [
        sys.executable, "-c", "import tensorflow, keras"]
    return commands


def _hold_lock(folder: str, env: dict) -> subprocess.Popen:
    """A process holding ``folder``'s run lock (as a training run does) until it is stopped."""
    code = ("import sys, time; from tpt_keras.runtime import run_folder; "
            "lock = run_folder.RunLock(sys.argv[1]).__enter__(); print('held', flush=True); "
            "time.sleep(3600)")
    holder = subprocess.Popen([sys.executable, "-c", code, folder], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return holder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="tpt-startup-")
    commands = rows(scratch)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    times = {name: [] for name in commands}
    holder = _hold_lock(os.path.join(scratch, "locked"), env)
    try:
        for _ in range(args.rounds):
            for name, command in commands.items():
                start = time.perf_counter()
                done = subprocess.run(command, cwd=scratch, env=env, capture_output=True)
                times[name].append(time.perf_counter() - start)
                if name.startswith("refusal") and done.returncode != 2:
                    raise SystemExit(f"{name}: exit status {done.returncode}, not 2")
    finally:
        holder.kill()
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
        elif name.startswith("refusal"):
            target = (f"< 1 s: {'met' if seconds < 1 else 'NOT met'} "
                      f"({seconds / reference:.2f}x TensorFlow's import)")
        else:
            target = "-"
        print(f"| {name} | {seconds:.2f} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
