"""Input pipelines for TPT: files → frames → clips → (query, exemplar) batches.

Rooms (one concept per module; none imports the model):

* :mod:`.samples` — the :class:`Sample` record and :func:`target`;
* :mod:`.datasets` — annotation adapters (MTL-AQA, AQA-7, JIGSAWS, CSV manifest) → sample lists;
* :mod:`.decode` — frame folders / GIF / container videos → uint8 frames (PyAV for video);
* :mod:`.protocol` — the :class:`VideoProtocol` (one per preset) and the numpy temporal rule;
* :mod:`.video_ops` — clip windowing, flip/resize/crop, normalisation (TensorFlow);
* :mod:`.pairing` — exemplar selection for training and test;
* :mod:`.features` — the clip-feature cache;
* :mod:`.reader` — the tf.data readers that assemble all of the above;
* :mod:`.tf_python` — their Python callbacks, stopped cleanly when the program exits;
* :mod:`.safe_pickle` — the restricted unpickler every annotation pickle goes through.

Importing this package is cheap (no TensorFlow); import the submodules you need.
"""

from .samples import Sample, target

__all__ = ["Sample", "target"]
