"""A decode error inside tf.data ends the program with its message; it never hangs at exit.

Without care, a failing element leaves parallel-map/prefetch workers decoding ahead; the
interpreter's shutdown catches them inside Python and the process sits in a futex wait forever
after printing the traceback (``data_pipelines.io.tf_python`` prevents it).
"""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Keras fit on video pairs where one training row is /etc/passwd (or a corrupt .mp4): the error is
# not caught, exactly as in `tpt train`. The child notes when the error reached the caller.
_TRAIN = """
import sys, time
import numpy as np
import keras
from data_pipelines.io import decode
from data_pipelines.tfdata import reader
from data_pipelines.samples import Sample

folder, bad = sys.argv[1], sys.argv[2]
good = decode.write_video(folder + "/ok.mp4", np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3)))
samples = [Sample(key=f"k{i}", path=good, score=float(i)) for i in range(6)] + [Sample(key="bad", path=bad, score=3.0)]
dataset = reader.video_pair_dataset(samples, 2, False, protocol="custom", seed=0, resize_height=24, resize_width=24, crop_size=16,
                                    num_clips=2, clip_len=4)
inputs = keras.Input((2, 4, 16, 16, 3))
model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
model.compile("adam", "mse")
try:
    model.fit(dataset.map(lambda e: (e["query"], e["query_score"])), steps_per_epoch=3, epochs=4, verbose=0)
finally:
    print("failed_at", time.monotonic(), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["/etc/passwd", "corrupt.mp4"])
def test_decode_error_in_training_exits_promptly_with_the_file_name(tmp_path, bad):
    if bad == "corrupt.mp4":
        bad = str(tmp_path / bad)
        with open(bad, "wb") as handle:
            handle.write(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    child = subprocess.Popen([sys.executable, "-c", _TRAIN, str(tmp_path), bad], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = child.communicate(timeout=240)  # TensorFlow's import alone is slow on 2 shared cores
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("the process hung after the decode error")
    exited = time.monotonic()
    assert child.returncode not in (0, None)
    assert "failed_at" in stdout, stderr[-3000:]
    failed_at = float(stdout.split("failed_at", 1)[1].split()[0])
    assert exited - failed_at < 30, f"exited {exited - failed_at:.1f} s after the error"
    assert f"VideoDecodeError: {bad}" in stderr
