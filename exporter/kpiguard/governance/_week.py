"""ISO weeks (``2026-W47``): parsing, the current one, and their UTC bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class IsoWeek:
    """One ISO 8601 week, Monday 00:00 UTC to the next Monday 00:00 UTC."""

    year: int
    week: int

    @property
    def start(self) -> datetime:
        """Monday 00:00 UTC, inclusive."""
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1), time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 UTC, exclusive."""
        return self.start + timedelta(days=7)

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` falls in this week."""
        return self.start <= when < self.end

    def __str__(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"


def parse_week(text: str) -> IsoWeek:
    """Parse ``YYYY-Www``; ValueError saying what is wrong otherwise (W53 exists only in long years)."""
    match = _WEEK_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected an ISO week like 2026-W47, got {text!r}")
    year, week = int(match.group(1)), int(match.group(2))
    if year < 1:
        raise ValueError(f"year {year} is out of range")
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        last = date(year, 12, 28).isocalendar().week
        raise ValueError(f"week {week:02d} does not exist in {year} (weeks 01 to {last:02d})") from None
    return IsoWeek(year, week)


def week_of(when: datetime) -> IsoWeek:
    """The ISO week holding ``when`` (in UTC)."""
    iso = when.astimezone(UTC).isocalendar()
    return IsoWeek(iso.year, iso.week)
