"""``python -m core.compare``: the command line only; the code lives in ``core.experiments.compare``."""

import sys

from core.experiments.compare import main

if __name__ == "__main__":
    sys.exit(main())
