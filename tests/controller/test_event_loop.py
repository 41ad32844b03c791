"""The operator's event loop is uvloop (as `kopf run` picks when it is installed): kopf.run() alone uses the
default asyncio loop, whose pure-Python selector, SSL transport and callback handling were about a sixth of the
operator's CPU per tick in a py-spy profile at 300 experiments."""

from __future__ import annotations

import asyncio

import pytest

from mlrollouts.controller.run import operator_loop


def test_operator_loop_is_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with operator_loop() as loop:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    assert loop.is_closed()  # owned and closed, as asyncio.run would
