"""Every routing test writes through a fake that validates each object against its upstream schema."""

from __future__ import annotations

import pytest
from routing_objects import ValidatingFake


@pytest.fixture
def objects() -> ValidatingFake:
    return ValidatingFake()
