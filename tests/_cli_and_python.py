"""In one fresh process: ``tpt train ARGS --output OUT/cli`` through the command line (in
process), then the same run from Python with ``experiment.train_run`` into ``OUT/train_run`` and
with ``experiment.train`` into ``OUT/train``. The tests compare their weights.

    python tests/_cli_and_python.py OUT FEATURES ARGS...   (ARGS: synthetic preset, --set, --epochs)
"""

import os
import sys

from tpt_keras import experiment
from tpt_keras.cli import main as cli

output, features, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
assert cli.main(["train", *argv, "--output", os.path.join(output, "cli"), "--features",
                 features]) == 0
sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
epochs = int(argv[argv.index("--epochs") + 1])
config = experiment.resolve_config(argv[0], sets, epochs=epochs)
experiment.train_run(config, os.path.join(output, "train_run"), features=features, verbose=0)
splits = experiment.synthetic_splits(config, features)
experiment.train(config, splits, os.path.join(output, "train"), features_dir=features, verbose=0)
