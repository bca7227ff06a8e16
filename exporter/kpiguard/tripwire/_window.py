"""Count windows as sufficient statistics: what the evaluator needs to know about a run of events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from kpiguard.tripwire._policy import Aggregation


@dataclasses.dataclass(frozen=True, slots=True)
class WindowStats:
    """Count, sum and sum of squares of a window's event values; windows add and subtract."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def from_values(cls, values: Iterable[float]) -> WindowStats:
        """The statistics of the given event values."""
        n = 0
        total = 0.0
        total_sq = 0.0
        for value in values:
            n += 1
            total += value
            total_sq += value * value
        return cls(n, total, total_sq)

    @classmethod
    def of(cls, value: float) -> WindowStats:
        """The statistics of a single event value."""
        return cls(1, value, value * value)

    @property
    def mean(self) -> float | None:
        """The mean of the values, or None for an empty window."""
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float:
        """The sample variance (n - 1 in the denominator); 0.0 below two values."""
        if self.n < 2:
            return 0.0
        spread = self.total_sq - self.total * self.total / self.n
        # For constant values rounding leaves a residue of either sign, about n * 1e-16 of the
        # sum of squares; anything that small is treated as the zero it is.
        if spread <= 1e-12 * self.total_sq:
            return 0.0
        return spread / (self.n - 1)

    def __add__(self, other: WindowStats) -> WindowStats:
        """The statistics of both windows' events together."""
        return WindowStats(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    def __sub__(self, other: WindowStats) -> WindowStats:
        """The statistics with ``other``'s events (a part of this window) taken out."""
        if other.n > self.n:
            raise ValueError(f"cannot remove {other.n} events from a window of {self.n}")
        return WindowStats(self.n - other.n, self.total - other.total, self.total_sq - other.total_sq)


EMPTY = WindowStats()


def event_value(aggregation: Aggregation, success: bool, value: float | None) -> float:
    """The number an event contributes to a window: 1.0/0.0 for a success rate, its value for a mean."""
    if aggregation == Aggregation.SUCCESS_RATE:
        return 1.0 if success else 0.0
    if value is None:
        raise ValueError("value: a mean_value policy needs events that carry a value")
    return float(value)


def split_windows(
    values_newest_first: Sequence[float], window_events: int, baseline_events: int
) -> tuple[WindowStats, WindowStats]:
    """Recent = the newest ``window_events`` values, baseline = the ``baseline_events`` just before them."""
    if window_events < 1 or baseline_events < 1:
        raise ValueError("window_events and baseline_events must be positive")
    recent = WindowStats.from_values(values_newest_first[:window_events])
    baseline = WindowStats.from_values(values_newest_first[window_events : window_events + baseline_events])
    return recent, baseline
