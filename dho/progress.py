"""Progress a person can read, on a terminal and in a log file.

On a terminal (stderr is a TTY) a loop shows a tqdm bar, unless the caller turned bars
off. Anywhere else (a Snakemake rule log, a SLURM job log) a bar would be a smear of
carriage returns, so instead one plain line is written each time another tenth of the
loop is done (at most one per ``min_interval_s``), and one at the end::

    pretrain tiny CLIP: 110/220 steps (50 %), 18 s elapsed, ~18 s left, loss 1.234
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Count the steps of a loop of ``total`` steps; see the module docstring for what it prints."""

    def __init__(self, total: int, desc: str, unit: str = "step", bar: bool = True,
                 stream: IO[str] | None = None, lines: int = 10, min_interval_s: float = 0.0,
                 initial: int = 0):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = self._start = int(initial)
        self.lines, self.min_interval_s = max(1, lines), min_interval_s
        self.postfix: dict[str, Any] = {}
        self.t0 = self._last_line = time.monotonic()
        self._next_fraction = self._fraction_after(initial)
        self._bar = None
        if bar and _is_tty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             leave=False, dynamic_ncols=True)

    def _fraction_after(self, done: int) -> int:
        """The next tenth (in units of 1/lines) after ``done`` steps."""
        return (done * self.lines) // self.total + 1 if self.total else self.lines + 1

    def set(self, **postfix: Any) -> None:
        """Values shown after the counts (e.g. ``loss=0.41``); floats get 4 significant digits."""
        self.postfix.update(postfix)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if not _is_tty(self.stream) and self.total and self.done * self.lines >= self._next_fraction * self.total:
            now = time.monotonic()
            if now - self._last_line >= self.min_interval_s or self.done >= self.total:
                self._write_line(now)
            self._next_fraction = self._fraction_after(self.done)

    def line(self) -> str:
        """The current progress as one line of text."""
        elapsed = time.monotonic() - self.t0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f} %), {_duration(elapsed)} elapsed"
        ran = self.done - self._start
        if 0 < ran and self.done < self.total:
            text += f", ~{_duration(elapsed / ran * (self.total - self.done))} left"
        if self.postfix:
            text += ", " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.postfix.items())
        return text

    def _write_line(self, now: float) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def iterate(self, items: Iterable) -> Iterator:
        """Yield ``items``, counting one step each; closes at the end."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def say(message: str, stream: IO[str] | None = None) -> None:
    """One progress line (e.g. an epoch's summary), flushed at once so a log shows it live."""
    print(message, file=stream if stream is not None else sys.stderr, flush=True)
