"""``python -m core.predict``: the command line only; the code lives in ``core.experiments.predict``."""

import sys

from core.experiments.predict import main

if __name__ == "__main__":
    sys.exit(main())
