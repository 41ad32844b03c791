"""The gateway's concurrency limit (slots.py): never over the limit, first come first served, and a
cancelled wait neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from mlrollouts.gateway.slots import Slots


def test_free_slots_are_taken_at_once_and_the_limit_holds() -> None:
    slots = Slots(2)
    assert slots.try_take() and slots.try_take() and not slots.try_take() and slots.locked()
    slots.release()
    assert not slots.locked() and slots.try_take() and slots.free == 0


def test_waiters_are_served_in_order_and_nobody_overtakes_them() -> None:
    async def scenario() -> list[str]:
        slots, served = Slots(1), []
        assert slots.try_take()

        async def user(name: str) -> None:
            await slots.take()
            served.append(name)
            await asyncio.sleep(0)
            slots.release()

        tasks = [asyncio.create_task(user(name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0)
        assert not slots.try_take()  # waiters exist: a newcomer waits its turn even if a slot frees
        slots.release()
        await asyncio.gather(*tasks)
        assert slots.free == 1 and not slots.waiters
        return served

    assert asyncio.run(scenario()) == ["first", "second", "third"]


@pytest.mark.parametrize("handed_a_slot", [False, True])
def test_a_cancelled_wait_gives_back_what_it_got(handed_a_slot: bool) -> None:
    async def scenario() -> Slots:
        slots = Slots(1)
        assert slots.try_take()
        waiting = asyncio.create_task(slots.take())
        behind = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        if handed_a_slot:
            slots.release()  # the slot goes to `waiting`, which is cancelled before it runs
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        if not handed_a_slot:
            slots.release()
        await asyncio.wait_for(behind, 1)  # the slot reached the next in line either way
        slots.release()
        return slots

    slots = asyncio.run(scenario())
    assert slots.free == 1 and not slots.waiters


def test_a_wait_cancelled_after_release_passed_it_over_leaves_no_trace() -> None:
    async def scenario() -> Slots:
        slots = Slots(1)
        assert slots.try_take()
        waiting = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        waiting.cancel()  # its future is cancelled now; the task sees it on its next step, after this release
        slots.release()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return slots

    slots = asyncio.run(scenario())
    assert slots.free == 1 and not slots.waiters
