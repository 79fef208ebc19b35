"""Files in and out: decoding frames and videos, the restricted unpickler, the clip-feature cache."""
