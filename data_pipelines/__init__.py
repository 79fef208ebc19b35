"""Input pipelines for TPT: files → frames → clips → (query, exemplar) batches.

Rooms (one concept per module; none imports the model):

* :mod:`.samples` — the :class:`Sample` record and :func:`target`;
* :mod:`.io` — decoding frames and videos (PyAV), the restricted unpickler every pickle goes
  through, the clip-feature cache;
* :mod:`.datasets` — annotation adapters (MTL-AQA, AQA-7, JIGSAWS, FineDiving, CSV manifest) →
  sample lists;
* :mod:`.video` — the :class:`VideoProtocol` (one per preset) and the numpy temporal rule; clip
  windowing, flip/resize/crop, normalisation (TensorFlow); steps on the clip grid;
* :mod:`.tfdata` — exemplar pairing, the tf.data readers that assemble all of the above, and their
  Python callbacks, stopped cleanly when the program exits;
* :mod:`.synthetic` — built-in data: clip features, rendered videos, dives with real step timing.

Importing this package is cheap (no TensorFlow); import the submodules you need.
"""

import os

# As tpt_keras/__init__.py does (whichever package is imported first, TensorFlow imported later
# gets the same setting): TensorFlow's oneDNN CPU kernels, which it turns on by itself only on
# CPUs with AVX-512 VNNI/BF16 or AMX, unless the user chose.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from data_pipelines.samples import Sample, target  # noqa: E402

__all__ = ["Sample", "target"]
