"""A one-line progress report on stderr for the long-running builders."""

import sys
import time


class Progress:
    """Prints ``label: done/total (elapsed)`` on one line, rewritten in place.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
    enabled : bool
        When False every method is a no-op, so callers need no branches.
    stream : file, optional
        Defaults to ``sys.stderr``.
    """

    def __init__(self, total, label, enabled=True, stream=None):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -1.0

    def update(self, steps=1, note=""):
        """Advance by ``steps`` and redraw (at most ten times a second)."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.done < self.total and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        extra = f" {note}" if note else ""
        self.stream.write(f"\r{self.label}: [{bar}] {self.done}/{self.total} "
                          f"{now - self.t0:6.1f}s{extra}   ")
        self.stream.flush()

    def close(self):
        """Finish the line."""
        if self.enabled:
            self.done = self.total - 1
            self._last = -1.0
            self.update()
            self.stream.write("\n")
            self.stream.flush()
