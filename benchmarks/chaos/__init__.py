"""Chaos, measured: faults injected into canaries on the local stack, and the invariants checked after each.

`make chaos` (`python -m benchmarks.chaos`) runs the full sweep; tests/controller/test_chaos_sample.py runs
one point of each cheap kind in `make test`. The stack is the end-to-end tests' (tests/controller/stack.py),
imported, not copied: its folder goes on sys.path here as pytest's `pythonpath` puts it there for the tests.
"""

from __future__ import annotations

import pathlib
import sys

CONTROLLER_TESTS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "controller"
if str(CONTROLLER_TESTS) not in sys.path:
    sys.path.insert(0, str(CONTROLLER_TESTS))
