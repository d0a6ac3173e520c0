"""A progress line with an ETA for long cohort runs, on stderr.

On a terminal it redraws one line; in a log file (not a TTY) it writes a line at most every
``log_every_s`` seconds and at the end, so logs stay short.
"""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``4000`` -> ``1h06m``."""
    if seconds != seconds or seconds < 0:  # NaN or negative: unknown
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class ProgressBar:
    """``total`` items; :meth:`update` after each. The ETA uses only items that did work (not skipped)."""

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True,
                 log_every_s: float = 10.0, width: int = 24):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self.width = width
        self.done = 0
        self.worked = 0
        self.failed = 0
        self.skipped = 0
        self.start = time.perf_counter()
        self._last_print = 0.0

    def eta_seconds(self) -> float:
        """Seconds left, from the rate of the items that did work so far (NaN before the first)."""
        if self.worked == 0:
            return float("nan")
        rate = (time.perf_counter() - self.start) / self.worked
        return rate * (self.total - self.done)

    def line(self, note: str = "") -> str:
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.label} [{bar}] {self.done}/{self.total}"]
        if self.skipped:
            parts.append(f"{self.skipped} unchanged")
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{format_duration(elapsed)} elapsed")
        if self.done < self.total:
            parts.append(f"ETA {format_duration(self.eta_seconds())}")
        if note:
            parts.append(note)
        return ", ".join(parts)

    def update(self, n: int = 1, *, worked: bool = True, failed: bool = False, note: str = "") -> None:
        """Count ``n`` items as finished (``worked``: extracted or failed, not skipped)."""
        self.done += n
        if failed:
            self.failed += n
        if worked:
            self.worked += n
        else:
            self.skipped += n
        self._show(note)

    def _show(self, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(note))
            self.stream.flush()
        elif force or self.done == self.total or now - self._last_print >= self.log_every_s:
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()
            self._last_print = now

    def message(self, text: str) -> None:
        """Print a line (e.g. a patient's failure) without garbling the bar."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + "\n")
            self._show()
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
