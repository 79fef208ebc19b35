"""``python -m tpt_keras.cli``."""

import sys

from tpt_keras.cli.main import main

sys.exit(main())
