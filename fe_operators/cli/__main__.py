"""``python -m fe_operators.cli``: the same as ``fe-operators``."""

import sys

from fe_operators.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
