"""Session-wide settings for every suite.

Integration tests compress time (1 s analysis intervals, 2 s steps) the way `make demo` does, below the
API's 5 s interval floor: they lower it with MLROLLOUTS_MIN_INTERVAL, which the operator processes they
start inherit. Tests of the floor itself remove the variable (tests/api/test_api_bounds.py).
"""

from __future__ import annotations

import os

from mlrollouts.api.durations import MIN_INTERVAL_ENV

os.environ.setdefault(MIN_INTERVAL_ENV, "1s")
