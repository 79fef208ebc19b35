"""Rerun the benchmarks that docs/benchmarks.md shows and write their output into it.

Every table in docs/benchmarks.md sits between two markers that name the command printing it::

    <!-- benchmark fit: benchmarks/train_step.py --fit --steps 50 --rounds 5 -->
    ...the command's output...
    <!-- /benchmark -->

This script runs each command (``python`` is this interpreter, the working folder the checkout)
and replaces what lies between the markers with what it printed: markdown table rows as they are,
every other line inside a ``text`` block. So the page holds only what the benchmarks print.

    .venv/bin/python benchmarks/update_docs.py              # every block (tens of minutes)
    .venv/bin/python benchmarks/update_docs.py fit startup  # the named blocks only
    .venv/bin/python benchmarks/update_docs.py --list
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "benchmarks.md")
BLOCK = re.compile(r"(<!-- benchmark (?P<name>[\w-]+): (?P<command>.+?) -->\n)(?P<body>.*?)"
                   r"(<!-- /benchmark -->)", re.DOTALL)


def as_markdown(output: str) -> str:
    """Table rows as they are; runs of other lines in ``text`` fences; blank lines dropped."""
    parts, text = [], []
    for line in output.splitlines():
        if line.startswith("|"):
            if text:
                parts.append("```text\n" + "\n".join(text) + "\n```")
                text = []
            if parts and not parts[-1].startswith("|"):
                parts.append("")
            parts.append(line)
        elif line.strip():
            if parts and parts[-1].startswith("|"):
                parts.append("")
            text.append(line)
    if text:
        parts.append("```text\n" + "\n".join(text) + "\n```")
    return "\n".join(parts).rstrip("\n") + "\n"


def run(command: str) -> str:
    argv = shlex.split(command)
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="blocks to rerun (default: all)")
    parser.add_argument("--list", action="store_true", help="list the blocks and their commands")
    args = parser.parse_args(argv)
    with open(PAGE, encoding="utf-8") as handle:
        page = handle.read()
    blocks = {m.group("name"): m.group("command") for m in BLOCK.finditer(page)}
    if args.list:
        for name, command in blocks.items():
            print(f"{name}: {command}")
        return 0
    unknown = sorted(set(args.names) - set(blocks))
    if unknown:
        raise SystemExit(f"no block named {', '.join(unknown)} in {PAGE}; --list shows them")
    for name in args.names or list(blocks):
        print(f"running {name}: {blocks[name]}", file=sys.stderr, flush=True)
        body = as_markdown(run(blocks[name]))
        page = BLOCK.sub(lambda m: (m.group(1) + body + m.group(5)) if m.group("name") == name
                         else m.group(0), page)
        with open(PAGE + ".tmp", "w", encoding="utf-8") as handle:  # after each block: nothing
            handle.write(page)                                      # lost if a later one fails
        os.replace(PAGE + ".tmp", PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
