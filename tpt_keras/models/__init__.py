"""Keras models: the Inception-I3D backbone with its Kinetics-400 weights, TPTModel with its custom
train/test steps and optimizer, and the loader of saved models."""
