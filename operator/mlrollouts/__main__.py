"""`python -m mlrollouts` is the `mlrollouts` command."""

import sys

from mlrollouts.cli.main import main

sys.exit(main())
