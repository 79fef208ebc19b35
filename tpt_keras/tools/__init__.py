"""Tools apart from the library: the demo (``make demo``) and the parity check against the original
Flax I3D (``tpt i3d-check``)."""
