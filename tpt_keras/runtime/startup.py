"""Starting TensorFlow quietly: its import and device set-up with the start-up noise of a machine
without a GPU (CUDA stubs, cuInit, absl's pre-initialisation line, oneDNN's notice) filtered out.

Library functions that validate their inputs first call :func:`import_tensorflow` only once
every check that needs no tensor has passed, so that a refused request never waits for
TensorFlow. Importing this module loads no TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# Start-up lines TensorFlow's C++ side writes straight to stderr on a machine without a GPU
# (before absl logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not reach them).
NOISE = re.compile(r"cudart_stub\.cc|cuda_platform\.cc|cuda_driver\.cc|cuda_executor\.cc|"
                   r"failed call to cuInit|absl::InitializeLog|Unable to register cu(DNN|FFT|BLAS)|"
                   r"oneDNN custom operations are on|computation_placer\.cc|cpu_feature_guard\.cc|"
                   r"To enable the following instructions: .* rebuild TensorFlow")


def import_tensorflow() -> None:
    """Import TensorFlow and list its devices with stderr captured at the file-descriptor level,
    then replay every captured line except the known start-up noise (:data:`NOISE`): real errors
    still show. Python's absl logger is set to errors only. A no-op once TensorFlow is imported."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe (cuInit) happens here, captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(True):
                if not NOISE.search(line):
                    sys.stderr.write(line)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
