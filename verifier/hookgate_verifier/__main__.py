"""Entry point of `python -m hookgate_verifier`; see hookgate_verifier.cli."""

import sys

from .cli import main

sys.exit(main())
