"""tpt-keras: the Temporal Parsing Transformer for action quality assessment, in Keras 3.

Importing the package is cheap: submodules (``tpt_keras.model``, ``tpt_keras.i3d``, ...) are
imported by the user, so that importing ``tpt_keras`` alone never loads TensorFlow.
"""

__version__ = "0.1.0"
