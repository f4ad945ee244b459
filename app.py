"""Start imgz (``python app.py``) or run one of its commands (``python app.py --help``)."""
import sys

from imgz.cli import run

if __name__ == "__main__":
    sys.exit(run())
