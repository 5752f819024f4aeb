"""``python -m simulator.report``: the same as ``probseg-report``."""

import sys

from .cli import main

sys.exit(main())
