"""How the demo triggers its two runs for one date, from the clock: right at any hour of the day.

Airflow's scheduler starts no task of a run whose logical date is in the future, so a run a user
can make now has a logical date at or before now, or none. The **first** run is the scheduler's:
logical date the date's midnight in the fleet's timezone (the shipped cron is ``0 0 * * *``).
The **second** is the UI's Trigger button: no logical date, so the DAG's run date is today. That
names the date only while it is today: for a past date, or in a day's last
:data:`ROLLOVER_MARGIN`, the date's noon is its logical date instead.

Pure functions of ``(day, now, timezone)``: the tests run them at any hour they like.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Long enough to cover the time between deciding here and Airflow reading its own clock.
ROLLOVER_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class Trigger:
    """One way to trigger a run: with a logical date, or (``None``) like the UI's Trigger button."""

    logical_date: datetime | None
    how: str  # says, for the summary, how the run was triggered and why


def today(now: datetime, timezone: str) -> date:
    return _aware(now).astimezone(ZoneInfo(timezone)).date()


def refuse_future(day: date, now: datetime, timezone: str) -> None:
    """Raise ``ValueError`` naming the date when no run for it can start yet."""
    current = today(now, timezone)
    if day > current:
        raise ValueError(
            f"{day} is in the future (today is {current} in the fleet's timezone {timezone}): "
            "Airflow starts no run before its logical date"
        )


def first_trigger(day: date, now: datetime, timezone: str) -> Trigger:
    """The scheduler's run for ``day``: logical date = its midnight in ``timezone``."""
    refuse_future(day, now, timezone)
    midnight = datetime.combine(day, time(0), ZoneInfo(timezone))
    return Trigger(midnight, f"as the scheduler does, with logical date {midnight.isoformat()}")


def second_trigger(day: date, now: datetime, timezone: str) -> Trigger:
    """A person's second run for ``day``: like the UI's Trigger button while ``day`` is today."""
    refuse_future(day, now, timezone)
    zone = ZoneInfo(timezone)
    next_midnight = datetime.combine(day + timedelta(days=1), time(0), zone)
    if today(now, timezone) == day and _aware(now) + ROLLOVER_MARGIN < next_midnight:
        return Trigger(None, "like the UI's Trigger button (no logical date)")
    noon = datetime.combine(day, time(12), zone)
    assert noon <= _aware(now), (noon, now)
    why = (
        "a past date: a run without one would be for today"
        if today(now, timezone) > day
        else "the date ends within a minute: a run without one could fall on the next day"
    )
    return Trigger(noon, f"with logical date {noon.isoformat()} ({why})")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give a timezone: {moment!r}")
    return moment
