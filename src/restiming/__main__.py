"""``python -m restiming`` and the ``restiming`` console script."""

import sys

from restiming._cli._main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
