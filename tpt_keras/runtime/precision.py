"""Mixed precision and XLA: which Keras dtype policy and ``jit_compile`` to use where.

Decisions of ``"auto"`` (measured facts behind them in ``docs/scale.md``, reproduced by
``benchmarks/precision_cpu.py``):

=========  ===========================  ============================================  ===========
device     training                     inference / feature extraction                XLA
=========  ===========================  ============================================  ===========
GPU        mixed_bfloat16 if compute    same as training                              on
           capability >= 8.0, else
           mixed_float16 if >= 7.0
           (or unknown), else float32
CPU        float32                      mixed_bfloat16 if the CPU has AMX-BF16 or     off
                                        AVX512-BF16, else float32
=========  ===========================  ============================================  ===========

Why, on CPU (TensorFlow 2.21, oneDNN, Xeon with AMX-BF16):

* ``mixed_float16`` has no fast CPU kernels: a Conv3D train step is hundreds of times slower.
* ``mixed_bfloat16`` is faster, and its forward pass is stable, but the Conv3D *backward* pass
  crashes the process (segmentation fault in oneDNN) in most runs. So bfloat16 is offered on CPU
  for inference only.
* XLA-compiled Conv3D on CPU is several times slower than the oneDNN kernels.

Explicit modes are obeyed, with a warning where they are known to be slow or to crash.

Example:

```python
policy = resolve_precision("auto", purpose="train")   # "float32" on this CPU
keras.mixed_precision.set_dtype_policy(policy)
model.compile(optimizer=..., jit_compile=resolve_jit_compile("auto"))
```
"""

from __future__ import annotations

import functools
import warnings

PRECISION_MODES = ("auto", "off", "float16", "bfloat16")
JIT_MODES = ("auto", "on", "off")
PURPOSES = ("train", "inference")
DEVICES = ("cpu", "gpu")

_POLICY_OF_MODE = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# Any of these /proc/cpuinfo flags means native bfloat16 arithmetic (oneDNN uses it).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bfloat16() -> bool:
    """True when the CPU does bfloat16 arithmetic natively (AMX-BF16 or AVX512-BF16)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def resolve_device(device: str | None = None) -> str:
    """``"gpu"`` or ``"cpu"``: ``device`` normalised (``"/GPU:0"`` -> ``"gpu"``), or, when
    ``None``, ``"gpu"`` if TensorFlow sees a GPU."""
    if device is None:
        import tensorflow as tf  # here, so that importing this module stays cheap

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    name = str(device).lower()
    for kind in ("gpu", "cpu"):
        if name == kind or f"{kind}:" in name:
            return kind
    raise ValueError(f"`device` must be 'cpu', 'gpu' or a TF device name. Received: {device!r}")


def gpu_compute_capability() -> tuple[int, int] | None:
    """Compute capability of the first visible GPU, e.g. ``(9, 0)`` for an H100; None if none."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    # get_device_details has no stable name (TensorFlow 2.21: tf.config.experimental only).
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return tuple(capability) if capability else None


def resolve_precision(
    mode: str = "auto", device: str | None = None, purpose: str = "train"
) -> str:
    """The Keras dtype policy name for ``mode`` on ``device`` for ``purpose``.

    Args:
        mode: one of ``PRECISION_MODES``: ``"auto"`` (see the module table), ``"off"``
            (float32), ``"float16"`` (mixed_float16), ``"bfloat16"`` (mixed_bfloat16).
        device: ``"cpu"``, ``"gpu"``, a TF device name, or None (GPU if one is visible).
        purpose: ``"train"`` or ``"inference"`` (includes feature extraction).

    Returns:
        ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
    """
    if mode not in PRECISION_MODES:
        raise ValueError(f"`mode` must be one of {PRECISION_MODES}. Received: {mode!r}")
    if purpose not in PURPOSES:
        raise ValueError(f"`purpose` must be one of {PURPOSES}. Received: {purpose!r}")
    device = resolve_device(device)

    if mode != "auto":
        policy = _POLICY_OF_MODE[mode]
        if device == "cpu" and policy == "mixed_float16":
            warnings.warn(
                "mixed_float16 on CPU: TensorFlow has no fast float16 CPU kernels; a Conv3D "
                "train step is hundreds of times slower than float32 (docs/scale.md).",
                stacklevel=2,
            )
        if device == "cpu" and policy == "mixed_bfloat16":
            if purpose == "train":
                warnings.warn(
                    "mixed_bfloat16 training on CPU: the Conv3D backward pass (I3D) crashes "
                    "with a segmentation fault in oneDNN in most runs (docs/scale.md). Models "
                    "without Conv3D are unaffected.",
                    stacklevel=2,
                )
            elif not cpu_supports_bfloat16():
                warnings.warn(
                    "mixed_bfloat16 on a CPU without AMX-BF16 / AVX512-BF16 is emulated and slow.",
                    stacklevel=2,
                )
        return policy

    if device == "gpu":
        capability = gpu_compute_capability()
        if capability is None:  # not visible here (e.g. deciding for another machine)
            return "mixed_float16"
        if capability >= (8, 0):
            return "mixed_bfloat16"
        if capability >= (7, 0):
            return "mixed_float16"
        return "float32"
    if purpose == "inference" and cpu_supports_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def resolve_jit_compile(mode: str = "auto", device: str | None = None) -> bool:
    """Whether to XLA-compile: ``"on"`` / ``"off"``, or ``"auto"``: on for GPU, off for CPU
    (XLA's CPU Conv3D is several times slower than oneDNN's)."""
    if mode not in JIT_MODES:
        raise ValueError(f"`mode` must be one of {JIT_MODES}. Received: {mode!r}")
    if mode != "auto":
        return mode == "on"
    return resolve_device(device) == "gpu"
