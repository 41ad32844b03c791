"""Where the split comes from: a JSON file (standalone) or the ModelExperiment's status (in a cluster).

The file is polled; the experiment is watched (kube_source.WatchSplitSource, whose poll waits for the next
event). A source returns a new SplitState when something changed, None when nothing did, and raises
SplitError for a bad split or an unreachable API; `follow` logs the error and keeps the last good split.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from mlrollouts.gateway.split import SplitError, SplitState, parse_split_file

log = logging.getLogger(__name__)

FILE_POLL_SECONDS = 0.25


class SplitSource(Protocol):
    interval: float

    async def poll(self) -> SplitState | None: ...

    async def close(self) -> None: ...


class FileSplitSource:
    """Re-reads the file when its mtime or size changes."""

    def __init__(self, path: Path, variants: Sequence[str], interval: float = FILE_POLL_SECONDS) -> None:
        self.path = path
        self.variants = tuple(variants)
        self.interval = interval
        self._seen: tuple[int, int] | None = None

    async def poll(self) -> SplitState | None:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise SplitError(f"cannot read split file {self.path}: {error.strerror}") from error
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature == self._seen:
            return None
        self._seen = signature
        return parse_split_file(self.path.read_text(encoding="utf-8"), self.variants)

    async def close(self) -> None:
        return None


async def follow(source: SplitSource, apply: Callable[[SplitState], None]) -> None:
    """Poll (or wait on the watch) forever; apply each new good split, warn once per distinct problem and keep
    the last good one."""
    last_problem: str | None = None
    while True:
        try:
            state = await source.poll()
        except SplitError as error:
            if str(error) != last_problem:
                log.warning("split rejected, keeping the last good split: problem=%r", str(error))
                last_problem = str(error)
        else:
            last_problem = None
            if state is not None:
                apply(state)
        await asyncio.sleep(source.interval)
