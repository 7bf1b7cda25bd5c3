"""The demo's two triggers at any hour: each is a run Airflow starts now, for the date asked.

The clock is injected. Every plan is checked the way Airflow would take it: a logical date must
not be in the future (the scheduler would never start the run), and the run date the DAG derives
(``fleet_dag.builder.run_date_for``, with ``run_after`` set by the API a moment later) must be the
demo's date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from fleet_dag.builder import run_date_for
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_demo import trigger_plan
from fleet_demo.__main__ import EXIT_BAD_INPUT, parse_args

DAY = date(2026, 12, 2)
# The API reads its clock after the plan is made: at most this much later.
API_LATENCY = timedelta(seconds=30)


def at(hour: int, minute: int = 0, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def dag_run_date(trigger: trigger_plan.Trigger, now: datetime, timezone: str) -> str:
    """The run date the DAG gives the run this trigger makes at ``now`` (run_after: the API's clock)."""
    run = SimpleNamespace(logical_date=trigger.logical_date, run_after=now + API_LATENCY)
    return run_date_for(run, timezone)


def assert_startable_for(trigger: trigger_plan.Trigger, day: date, now: datetime, timezone: str) -> None:
    assert trigger.logical_date is None or trigger.logical_date <= now, (trigger, now)
    assert dag_run_date(trigger, now, timezone) == str(day), (trigger, now)


# The hours that broke the demo (before noon) and the edges of the day.
HOURS = [at(0, 0, 30), at(4), at(11, 59), at(12, 1), at(23, 59), at(23, 59, 30)]


class TestToday:
    @pytest.mark.parametrize("now", HOURS, ids=lambda now: now.strftime("%H:%M:%S"))
    def test_both_runs_for_today_start_now_and_are_for_today(self, now):
        first = trigger_plan.first_trigger(DAY, now, "UTC")
        second = trigger_plan.second_trigger(DAY, now + timedelta(seconds=25), "UTC")

        assert first.logical_date == at(0)
        assert_startable_for(first, DAY, now, "UTC")
        assert_startable_for(second, DAY, now + timedelta(seconds=25), "UTC")

    def test_at_4_the_second_run_is_made_like_the_ui_trigger_button(self):
        second = trigger_plan.second_trigger(DAY, at(4), "UTC")

        assert second.logical_date is None
        assert "Trigger button" in second.how

    def test_in_the_last_minute_of_the_day_the_second_run_names_the_date(self):
        # Without a logical date, the API's clock could already read tomorrow.
        second = trigger_plan.second_trigger(DAY, at(23, 59, 30), "UTC")

        assert second.logical_date == at(12)
        assert "ends within a minute" in second.how

    def test_a_second_run_made_after_midnight_is_still_for_the_date(self):
        # The first run started at 23:59:30 and ended after midnight.
        second = trigger_plan.second_trigger(DAY, at(0, 0, 20, DAY + timedelta(days=1)), "UTC")

        assert second.logical_date == at(12)
        assert "a past date" in second.how


class TestPastAndFuture:
    @pytest.mark.parametrize("now", HOURS, ids=lambda now: now.strftime("%H:%M:%S"))
    def test_a_past_date_gets_logical_dates_before_now(self, now):
        past = date(2026, 11, 20)
        for plan in (trigger_plan.first_trigger, trigger_plan.second_trigger):
            trigger = plan(past, now, "UTC")
            assert trigger.logical_date is not None
            assert_startable_for(trigger, past, now, "UTC")

    def test_a_future_date_is_refused_naming_it(self):
        with pytest.raises(ValueError, match=r"2026-12-03 is in the future \(today is 2026-12-02"):
            trigger_plan.first_trigger(date(2026, 12, 3), at(23, 59, 30), "UTC")


class TestTimezones:
    def test_ahead_of_utc_today_is_already_tomorrow(self):
        # 20:00 UTC is 05:00 the next day in Tokyo: the demo's default date is Tokyo's.
        now = at(20)
        tomorrow = DAY + timedelta(days=1)
        assert trigger_plan.today(now, "Asia/Tokyo") == tomorrow
        for plan in (trigger_plan.first_trigger, trigger_plan.second_trigger):
            assert_startable_for(plan(tomorrow, now, "Asia/Tokyo"), tomorrow, now, "Asia/Tokyo")

    def test_behind_utc_today_is_still_yesterday(self):
        # 03:00 UTC is 22:00 the evening before in New York; New York's today is not over.
        now = at(3)
        yesterday = DAY - timedelta(days=1)
        assert trigger_plan.today(now, "America/New_York") == yesterday
        second = trigger_plan.second_trigger(yesterday, now, "America/New_York")
        assert second.logical_date is None
        assert_startable_for(second, yesterday, now, "America/New_York")
        with pytest.raises(ValueError, match="in the future"):
            trigger_plan.first_trigger(DAY, now, "America/New_York")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    days_back=st.integers(min_value=0, max_value=400),
    timezone=st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"]),
    took=st.floats(min_value=0, max_value=3600),
)
def test_any_hour_any_past_date_any_timezone(now, days_back, timezone, took):
    """The first run at ``now``, the second ``took`` seconds later: both start at once, both for the day."""
    day = trigger_plan.today(now, timezone) - timedelta(days=days_back)
    later = now + timedelta(seconds=took)

    assert_startable_for(trigger_plan.first_trigger(day, now, timezone), day, now, timezone)
    assert_startable_for(trigger_plan.second_trigger(day, later, timezone), day, later, timezone)


class TestDemoArguments:
    def test_the_default_date_is_today_in_the_fleets_timezone(self):
        assert parse_args([], now=at(23, 59, 30)).date == DAY
        assert parse_args([], now=at(0, 0, 30)).date == DAY

    def test_a_future_date_is_exit_2_naming_it(self, capsys):
        with pytest.raises(SystemExit) as exited:
            parse_args(["--date", "2026-12-03"], now=at(4))

        assert exited.value.code == EXIT_BAD_INPUT
        assert (
            "--date 2026-12-03: 2026-12-03 is in the future (today is 2026-12-02" in capsys.readouterr().err
        )
