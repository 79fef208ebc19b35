"""Python callbacks inside tf.data, made safe for the interpreter's exit.

A tf.data pipeline calls Python (``tf.numpy_function``) from its own worker threads: video
decoding, the epoch plan, feature lookups. A parallel map and a prefetch keep such calls running
ahead of the consumer, also after an element has failed. If the interpreter starts shutting down
while one of them is in flight — e.g. the command ends with an error's traceback a moment after
the failure — that worker can never take the GIL again, and the iterator's destructor waits for
it forever: the process hangs in a futex wait after printing the traceback.

:func:`numpy_function` wraps every such callback. At exit (an ``atexit`` handler, which runs
before the interpreter stops other threads), callbacks that start from then on fail at once
instead of working, and the handler waits (at most ``DRAIN_TIMEOUT_S``) until none is in flight
and none has started for ``QUIET_S``: the pipelines are idle, and tearing them down finishes.
"""

from __future__ import annotations

import atexit
import threading
import time

import tensorflow as tf

DRAIN_TIMEOUT_S = 10.0
QUIET_S = 0.2


class _Calls:
    """In-flight count of wrapped callbacks and the exit flag."""

    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.started = 0
        self.closing = False


_CALLS = _Calls()


class InterpreterExiting(RuntimeError):
    """Raised inside a tf.data worker when its callback starts while the program exits."""


def _guard(function):
    def call(*args):
        with _CALLS.lock:
            if _CALLS.closing:
                raise InterpreterExiting("the program is exiting; input pipeline stopped")
            _CALLS.in_flight += 1
            _CALLS.started += 1
        try:
            return function(*args)
        finally:
            with _CALLS.lock:
                _CALLS.in_flight -= 1

    return call


def drain(timeout_s: float = DRAIN_TIMEOUT_S, quiet_s: float = QUIET_S) -> bool:
    """Stop new callbacks and wait until none runs and none starts for ``quiet_s``.

    Returns True when the pipelines went quiet within ``timeout_s``."""
    with _CALLS.lock:
        _CALLS.closing = True
        if _CALLS.started == 0:
            return True
    deadline = time.monotonic() + timeout_s
    last = (-1, -1)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        with _CALLS.lock:
            state = (_CALLS.in_flight, _CALLS.started)
        if state != last or state[0]:
            last, quiet_since = state, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return True
        time.sleep(0.02)
    return False


atexit.register(drain)


def numpy_function(function, inputs, output_types, name: str):
    """``tf.numpy_function(function, inputs, output_types, stateful=False, name=name)`` with the
    exit guard above. Shapes as ``tf.numpy_function`` returns them (set them afterwards)."""
    return tf.numpy_function(_guard(function), inputs, output_types, stateful=False, name=name)
