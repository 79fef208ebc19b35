"""One cached ``tf.function`` per model and purpose, held weakly.

Evaluation, the exemplar bank and I3D feature extraction call a model many times on batches of
one shape; each wants the call traced once (``reduce_retracing``) and reused, without the cache
keeping a dropped model (and its traced graphs) alive. :func:`cached_function` is that cache: keys
are weak references to the model, and the traced function holds the model weakly too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable

import tensorflow as tf

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached_function(model, key: Hashable, call: Callable, *, autograph: bool = True,
                    jit_compile: bool | None = None):
    """The ``tf.function`` of ``call(model, *args)`` for ``(model, key)``, traced on first use.

    Args:
        model: the Keras model (any weak-referenceable object).
        key: what distinguishes this function among the model's (e.g. ``("forward", False)``).
            The key should include every setting baked into the trace (``jit_compile`` too).
        call: ``call(model, *args, **kwargs)``, the computation (Python values among the
            arguments, e.g. ``training=False``, are part of the trace).
        autograph: convert Python control flow (off for calls that need none).
        jit_compile: XLA or not (None: TensorFlow's default).

    Returns:
        A callable ``(*args, **kwargs) -> call(model, *args, **kwargs)``.
    """
    functions = _CACHE.setdefault(model, {})
    if key not in functions:
        model_ref = weakref.ref(model)

        def bound(*args, **kwargs):
            return call(model_ref(), *args, **kwargs)

        functions[key] = tf.function(bound, reduce_retracing=True, autograph=autograph,
                                     jit_compile=jit_compile)
    return functions[key]
