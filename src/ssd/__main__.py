"""``python -m ssd`` and ``torchrun -m ssd train ...``."""

import sys

from .cli import main

sys.exit(main())
