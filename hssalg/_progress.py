"""A one-line progress report on stderr for the long-running builders."""

import sys
import time


class Progress:
    """Prints ``label: done/total (elapsed)`` on one line, rewritten in place.

    On a terminal the line is redrawn at most ten times a second; when stderr
    goes to a file or a CI log it is printed as a new line at most every five
    seconds, so logs stay short.

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
        self._last = self.t0
        self._drawn = -1
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._every = 0.1 if self._tty else 5.0

    def update(self, steps=1, note=""):
        """Advance by ``steps`` and redraw when it is time to."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= self._every:
            self._draw(now, note)

    def _draw(self, now, note=""):
        self._last = now
        self._drawn = self.done
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        extra = f" {note}" if note else ""
        start, end = ("\r", "   ") if self._tty else ("", "\n")
        self.stream.write(f"{start}{self.label}: [{bar}] {self.done}/{self.total} "
                          f"{now - self.t0:6.1f}s{extra}{end}")
        self.stream.flush()

    def close(self):
        """Draw the final state (once) and end the line."""
        if not self.enabled:
            return
        self.done = self.total
        if self._drawn != self.total:
            self._draw(time.perf_counter())
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
