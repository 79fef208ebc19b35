"""Run ``tpt ARGS`` and kill this process with SIGKILL, as ``kill -9`` would, at a chosen moment:
just before the N-th atomic replace of a run-folder file whose name ends with SUFFIX (its new
version is complete in the temporary file; the old one is still in place).

    python tests/_kill_at.py SUFFIX N ARGS...
"""

import os
import signal
import sys

from tpt_keras.cli import main as cli

suffix, occurrence, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
real_replace = os.replace
seen = []


def replace_or_die(source, target, *args, **kwargs):
    if os.fspath(target).endswith(suffix):
        seen.append(target)
        if len(seen) == occurrence:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, target, *args, **kwargs)


os.replace = replace_or_die
sys.exit(cli.main(argv))
