"""``python -m bench.report``: see :mod:`bench.report`."""

import sys

from .cli import main

sys.exit(main())
