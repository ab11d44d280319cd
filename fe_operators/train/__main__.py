"""``python -m fe_operators.train``: the same as ``fe-operators train``."""

import sys

from fe_operators.cli.train import main_train

if __name__ == "__main__":
    sys.exit(main_train())
