"""A progress bar on stderr for long runs: shown only on a terminal and only after ~1 s."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional

from qcalc.core.tensor import Progress

SHOW_AFTER_SECONDS = 1.0


class TerminalProgress(Progress):
    """Tensors and bytes done, drawn by rich on stderr; a no-op when stderr is not a tty."""

    def __init__(self, stream: Any = None, show_after: float = SHOW_AFTER_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_after = show_after
        self.started = time.monotonic()
        self.tensors = self.total_tensors = self.bytes = self.total_bytes = 0
        self._bar: Optional[Any] = None
        self._task: Any = None
        self._lock = threading.Lock()  # tensors advance it from several threads (--jobs)

    def start(self, tensors: int, total_bytes: int) -> None:
        self.total_tensors, self.total_bytes = tensors, total_bytes
        self.started = time.monotonic()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self._refresh()

    def tensor_done(self) -> None:
        with self._lock:
            self.tensors += 1
            self._refresh()

    def _refresh(self) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self.started < self.show_after:
                return
            self._open()
        self._bar.update(
            self._task,
            completed=self.bytes,
            description=f"tensors {self.tensors}/{self.total_tensors}",
        )

    def _open(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )  # fmt: skip
        from rich.progress import (
            Progress as Bar,
        )

        self._bar = Bar(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(file=self.stream), transient=True,
        )  # fmt: skip
        self._task = self._bar.add_task("", total=self.total_bytes)
        self._bar.start()

    def __enter__(self) -> "TerminalProgress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()  # the bar goes away however the run ends

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
