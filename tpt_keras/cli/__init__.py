"""``tpt``: the command line (``tpt_keras.cli.main``), thin; ``python -m tpt_keras.cli`` runs it."""
