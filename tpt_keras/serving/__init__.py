"""The SavedModel for TF Serving and scoring a video with it."""
