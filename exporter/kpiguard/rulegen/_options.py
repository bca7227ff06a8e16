"""The knobs of the rule generator, with the defaults the checked-in rules/ are generated with."""

from __future__ import annotations

import dataclasses

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: int) -> str:
    """A whole number of seconds as a Prometheus duration in its largest exact unit: 300 → ``5m``, 0 → ``0s``."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    for unit, size in _UNITS:
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return "0s"


@dataclasses.dataclass(frozen=True, slots=True)
class RuleOptions:
    """Windows, ``for:`` durations and link bases of the generated rules; every duration in seconds."""

    # Short windows recorded for every (domain, metric); the last one is compared with the baseline.
    short_windows: tuple[int, ...] = (300, 3600)
    # The baseline is this long and ends where the compared short window begins, so it never contains it.
    baseline_window: int = 7 * 86400
    # The count-window alert mirrors kpiguard's own decision, which already waits for min_events_to_enforce
    # events in both windows and changes only when events arrive; waiting longer would only make the
    # Prometheus path slower than the native one it mirrors.
    count_window_for: int = 0
    # An hour against a week moves slowly; ten minutes of agreement rides out a burst of failures that a
    # retry storm or a deploy can cause without a real regression.
    time_window_for: int = 600
    runbook_base_url: str = "https://kpiguard.example/runbooks"
    dashboard_base_url: str = "http://localhost:3000"

    def __post_init__(self) -> None:
        if not self.short_windows or any(w <= 0 for w in self.short_windows):
            raise ValueError("short_windows must be positive durations")
        if self.baseline_window <= self.compare_window:
            raise ValueError("baseline_window must be longer than the compared short window")

    @property
    def compare_window(self) -> int:
        """The short window the time-window alert compares with the baseline."""
        return self.short_windows[-1]

    @property
    def baseline_offset(self) -> int:
        """How far back the baseline ends: exactly the compared window, so the two never overlap."""
        return self.compare_window

    @property
    def baseline_label(self) -> str:
        """The baseline window as it appears in recording rule names, e.g. ``7d_offset1h``."""
        return f"{duration(self.baseline_window)}_offset{duration(self.baseline_offset)}"
