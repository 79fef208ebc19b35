"""tf.data assembly: exemplar pairing rules and the readers that build training and test datasets."""
