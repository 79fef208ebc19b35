"""The video protocol and its operations: which frames become clips (numpy), resize / crop / flip /
normalise (TensorFlow), and per-frame step labels on the clip grid."""
