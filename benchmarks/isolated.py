"""Run a benchmark row in a fresh process, so that a crash (a oneDNN segfault, an out-of-memory
kill) or a hang is reported as that row's status instead of ending the whole benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_isolated(script: str, args: list[str], timeout: float, result_tag: str) -> dict:
    """Run ``python script *args``; the child prints one line ``result_tag + json``.

    Returns:
        ``{"status": "ok", "wall_s": ..., **the child's json}``, or ``{"status": "crashed
        (SIGSEGV)" | "timeout > N s" | "failed: <last error line>" | "no result", "wall_s": ...}``.
    """
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run([sys.executable, os.path.abspath(script), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if done.returncode < 0:
        return {"status": f"crashed ({signal.Signals(-done.returncode).name})", "wall_s": wall}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["?"]
        errors = [line for line in lines if "Error" in line or "No OpKernel" in line]
        return {"status": f"failed: {(errors or lines)[-1].strip()[:160]}", "wall_s": wall}
    for line in done.stdout.splitlines():
        if line.startswith(result_tag):
            return {"status": "ok", "wall_s": wall, **json.loads(line[len(result_tag):])}
    return {"status": "no result", "wall_s": wall}
