"""Demo progress in the terminal: a rich Live panel on a TTY, plain periodic lines otherwise (CI logs)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from mlrollouts.cli.experiment_view import render_experiment
from mlrollouts.demo.orchestrator import Snapshot

PLAIN_EVERY_SECONDS = 5.0


def traffic_line(traffic: dict[str, Any]) -> str:
    if not traffic:
        return "traffic: starting"
    served = traffic.get("served") or {}
    retained = traffic.get("retained") or {}
    per_variant = ", ".join(
        f"{name} {count} ({retained.get(name, 0) / count:.1%} retained)"
        for name, count in sorted(served.items())
        if count
    )
    sent, failed = traffic.get("sent", 0), traffic.get("failed", 0)
    return f"traffic: {sent} requests, {failed} failed; served {per_variant or 'none yet'}"


def plain_line(snapshot: Snapshot) -> str:
    """One line with what changed the run: phase, step, weights, samples, evidence, guardrails, decision."""
    status = (snapshot.experiment or {}).get("status") or {}
    analysis = status.get("analysis") or {}
    weights = ",".join(f"{k}={v}" for k, v in (status.get("weights") or {}).items()) or "-"
    samples = ",".join(
        f"{k}={int(v.get('successes') or 0)}/{int(v.get('trials') or 0)}"
        for k, v in (status.get("samples") or {}).items()
    )
    guardrails = ",".join(
        f"{g.get('name')}={g.get('verdict') or ('ok' if g.get('healthy', True) else 'FAIL')}({_number(g.get('value'))})"
        for g in status.get("guardrails") or []
    )
    evidence = f"p={_number(analysis.get('pValue'))} P(better)={_number(analysis.get('probabilityBetter'))}"
    step = status.get("step")
    return (
        f"[{snapshot.elapsed:6.1f}s] phase={status.get('phase') or 'Pending'}"
        + (f" step={step}" if step is not None else "")
        + f" weights={weights} samples={samples or '-'} {evidence} guardrails={guardrails or '-'}"
        + f" decision={analysis.get('decision') or '-'}: {analysis.get('reason') or status.get('message') or ''}"
    )


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


class ProgressDisplay:
    """Call with each Snapshot; use as a context manager so a Live display is always closed."""

    def __init__(self, console: Console, scenario_line: str, plain: bool | None = None) -> None:
        self.console = console
        self.scenario_line = scenario_line
        self.plain = not console.is_terminal if plain is None else plain
        self.live: Live | None = None
        self._last_plain: tuple[float, str] | None = None

    def __enter__(self) -> ProgressDisplay:
        if not self.plain:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __call__(self, snapshot: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self.renderable(snapshot))
            return
        line = plain_line(snapshot)
        key = line.split("] ", 1)[-1]
        if self._should_print(snapshot.elapsed, key):
            self.console.print(line, highlight=False, soft_wrap=True)
            self._last_plain = (snapshot.elapsed, key)

    def _should_print(self, elapsed: float, key: str) -> bool:
        """The first line, every phase change, and other changes at most every PLAIN_EVERY_SECONDS."""
        if self._last_plain is None:
            return True
        last_time, last_key = self._last_plain
        if _phase(key) != _phase(last_key):
            return True
        return key != last_key and elapsed - last_time >= PLAIN_EVERY_SECONDS

    def renderable(self, snapshot: Snapshot) -> Group:
        header = Text.assemble(
            (f"mlrollouts demo · {self.scenario_line}", "bold"), f"  ·  elapsed {snapshot.elapsed:.0f}s\n"
        )
        footer = Text(f"{traffic_line(snapshot.traffic)}\nwatch it: {snapshot.watch_hint}", style="dim")
        body = render_experiment(snapshot.experiment) if snapshot.experiment else Text("applying the experiment…")
        return Group(header, body, footer)


def _phase(key: str) -> str:
    return key.split(" ", 1)[0]
