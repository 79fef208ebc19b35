"""Keras Tuner search (the only package that imports keras_tuner)."""
