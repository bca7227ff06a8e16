"""A plain-text progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""

from __future__ import annotations

from typing import TextIO


class Progress:
    """Counts ``total`` units of work and draws how far it got."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())

    def bar(self, label: str = "") -> str:
        """The bar as text: ``[#######-------]  45% label``."""
        filled = round(self.WIDTH * self.done / self.total)
        return f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {100 * self.done // self.total:3d}% {label}".rstrip()

    def advance(self, n: int = 1, label: str = "", *, line: bool = False) -> None:
        """Count ``n`` more units; draw in place on a terminal, or a whole line when ``line`` is set."""
        self.done = min(self.total, self.done + n)
        if self._tty:
            self._stream.write("\r\x1b[K" + self.bar(label))
        elif line:
            self._stream.write(self.bar(label) + "\n")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the bar so a line of output can be printed under it (terminal only)."""
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
