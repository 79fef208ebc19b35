"""One line that says where a benchmark ran: CPU model, vector/matrix flags, BLAS, oneDNN, threads,
load. Every benchmark prints it above its table, so a figure is never read without its CPU.

    from host import host_line   # benchmarks/ is on sys.path when a script in it runs
    print(host_line())
"""

from __future__ import annotations

import os
import platform

# Flags that decide which float32/bfloat16 kernels oneDNN and BLAS can use.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_info() -> dict:
    """``{"model": str, "flags": [the VECTOR_FLAGS present], "cores": int}`` from /proc/cpuinfo."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model or platform.processor() or "unknown CPU", "flags": [f for f in VECTOR_FLAGS if f in flags],
            "cores": os.cpu_count()}


def blas_name() -> str:
    """numpy's BLAS, e.g. ``"scipy-openblas 0.3.31"``."""
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001  (older numpy: no dict mode; only informative)
        return "unknown"


def onednn_enabled() -> str:
    """"on" / "off": whether this process's TensorFlow runs its oneDNN CPU kernels. TensorFlow
    decides once, at import, from ``TF_ENABLE_ONEDNN_OPTS`` or, unset, from the CPU (on only with
    AVX-512 VNNI/BF16 or AMX); ``import tpt_keras`` sets it to 1 when unset."""
    try:  # no public API says it; this is the flag TensorFlow's own tests read
        from tensorflow.python.util import _pywrap_util_port

        return "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except ImportError:
        return "?"


def tf_threads() -> str:
    """TensorFlow's oneDNN state and thread pools (0 = TensorFlow's default, one per core)."""
    import tensorflow as tf

    variable = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    return (f"TF {tf.__version__}, oneDNN {onednn_enabled()} (TF_ENABLE_ONEDNN_OPTS={variable}), intra-op "
            f"{tf.config.threading.get_intra_op_parallelism_threads()}, inter-op "
            f"{tf.config.threading.get_inter_op_parallelism_threads()}")


def gpu_name() -> str | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{details.get('device_name', 'GPU')} x{len(gpus)}"


def host_line(tensorflow: bool = True) -> str:
    """``# host: <CPU model> (<flags>), <n> cores; BLAS ...; TF ..., oneDNN ..., threads; load ...``."""
    cpu = cpu_info()
    parts = [f"{cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'}), {cpu['cores']} logical cores",
             f"numpy BLAS {blas_name()}"]
    if tensorflow:
        parts.append(tf_threads())
        gpu = gpu_name()
        if gpu:
            parts.append(f"GPU {gpu}")
    parts.append("load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return "# host: " + "; ".join(parts)
