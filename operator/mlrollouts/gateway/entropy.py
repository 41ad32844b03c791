"""Random hex strings for request ids and token nonces, two per prediction, without two syscalls each.

`uuid.uuid4()` and `secrets.token_hex()` each ask the kernel (getrandom) for 16 or 12 bytes: at 32 in
flight that was two syscalls per prediction (strace). `RandomHex` asks for 4 KiB at a time and hands
out slices: the same kernel CSPRNG bytes, each used once, so ids and nonces stay as unpredictable as
before. The buffer is filled on first use, in the serving process (a fork after that would share it);
a lock keeps gateways served in threads of one process (the tests) from taking the same slice.
"""

from __future__ import annotations

import os
import threading

CHUNK = 4096


class RandomHex:
    """`hex(n)`: n random bytes as 2n lower-case hex digits, never handed out twice."""

    def __init__(self) -> None:
        self._digits = ""  # a chunk of random bytes, as hex digits once (not a .hex() per slice)
        self._offset = 0
        self._lock = threading.Lock()

    def hex(self, size: int) -> str:
        with self._lock:
            start = self._offset
            end = start + 2 * size
            if end > len(self._digits):
                self._digits, start, end = os.urandom(max(CHUNK, size)).hex(), 0, 2 * size
            self._offset = end
            return self._digits[start:end]


RANDOM_HEX = RandomHex()
