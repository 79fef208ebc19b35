"""tpt-keras: the Temporal Parsing Transformer for action quality assessment, in Keras 3.

Importing the package is cheap: submodules (``tpt_keras.model``, ``tpt_keras.i3d``, ...) are
imported by the user, so that ``data_pipelines`` can use ``tpt_keras.safe_pickle`` without
loading TensorFlow.
"""

__version__ = "0.1.0"
