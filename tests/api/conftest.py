from __future__ import annotations

from typing import Any

import pytest
from api_support import load_example


@pytest.fixture
def churn() -> dict[str, Any]:
    """DESIGN §2's manifest (canary through Istio), a fresh copy per test."""
    return load_example("churn-v3.yaml")
