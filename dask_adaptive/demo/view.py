"""The live terminal view: rich when stdout is a terminal, one plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


class View:
    def __init__(self, total: int, maximum: int, live: bool | None = None) -> None:
        self.total = total
        self.maximum = maximum
        self.console = Console()
        self.live = sys.stdout.isatty() if live is None else live
        self._live: Live | None = None
        self._last_plain = 0.0

    def __enter__(self) -> View:
        if self.live:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)

    def update(self, elapsed: float, phase: str, sample: dict[str, Any]) -> None:
        if self._live is not None:
            self._live.update(self._render(elapsed, phase, sample))
        elif time.monotonic() - self._last_plain >= 2.0:
            self._last_plain = time.monotonic()
            self.say(
                f"[{elapsed:6.1f}s] {phase:<28} tasks {sample['done']}/{self.total}  "
                f"workers requested {sample['requested']} running {sample['running']}  "
                f"in flight {sample['in_flight']}"
            )

    def say(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message)
        else:
            print(message, flush=True)

    def _render(self, elapsed: float, phase: str, sample: dict[str, Any]) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("elapsed", f"{elapsed:.1f}s")
        table.add_row("phase", phase)
        table.add_row("tasks done", f"{sample['done']} / {self.total}")
        table.add_row(
            "workers", f"requested {sample['requested']}  running {sample['running']}  (max {self.maximum})"
        )
        table.add_row("in flight", str(sample["in_flight"]))
        bar = ProgressBar(total=max(self.total, 1), completed=sample["done"], width=50)
        title = Text("dask-adaptive demo: local workers, scaled by the scheduler preload", style="bold cyan")
        return Group(title, table, bar)
