"""``python -m edgeswarm.chaos``: the same as ``scripts/chaos``."""

import sys

from edgeswarm.chaos.runner import main

sys.exit(main())
