"""Keras layers: the temporal parsing decoder, the part encoders of the ablations, the part-aware
contrastive regressor, and their initialisers."""
