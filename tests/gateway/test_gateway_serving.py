"""What the gateway's server adds under uvicorn: one write per response, ids and nonces never repeated."""

from __future__ import annotations

import asyncio
import threading

from mlrollouts.gateway.entropy import CHUNK, RandomHex
from mlrollouts.gateway.protocol import OneWrite


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def test_a_responses_head_and_body_leave_in_one_write_in_order() -> None:
    async def scenario() -> RecordingTransport:
        real = RecordingTransport()
        transport = OneWrite(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert real.writes == [] and transport.get_write_buffer_size() > 0
        transport.write(memoryview(b"{}"))
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # alone: goes out when the loop turns
        await asyncio.sleep(0)
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        transport.close()  # what is held is sent before the connection closes
        assert transport.get_extra_info("peername") == "extra peername"
        return real

    real = asyncio.run(scenario())
    assert real.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    assert real.closed


def test_random_ids_are_hex_and_never_handed_out_twice_across_refills_and_threads() -> None:
    source = RandomHex()
    seen: list[str] = []

    def take() -> None:
        seen.extend(source.hex(12) for _ in range(CHUNK // 12 * 3))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(value) == 24 and int(value, 16) >= 0 for value in seen)
    assert len(set(seen)) == len(seen)
    assert len(source.hex(CHUNK + 5)) == 2 * (CHUNK + 5)
