"""The agent ↔ DAG tag protocol: what the agent writes is what the DAG reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from instance_agent.protocol import (
    TAG_HEARTBEAT,
    TAG_JOBS,
    TAG_NOTICE,
    TAG_STATE,
    TAG_VALUE_MAX,
    AgentReport,
    decode_job_durations,
    decode_jobs,
    encode_jobs,
)

NOW = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)


class TestJobSummary:
    def test_round_trip_of_codes_and_words(self):
        outcomes = {"backoffice": 0, "uniswap2": 3, "hyperliquid": "running", "shield": -9}
        assert encode_jobs(outcomes) == "backoffice=0,uniswap2=3,hyperliquid=running,shield=-9"
        assert decode_jobs(encode_jobs(outcomes)) == outcomes

    def test_long_summary_is_cut_to_the_tag_limit_and_counts_what_it_hides(self):
        outcomes = {f"job_number_{index}": index for index in range(60)}
        text = encode_jobs(outcomes)
        assert len(text) <= TAG_VALUE_MAX
        shown = decode_jobs(text)
        hidden = int(text.rsplit(",+", 1)[1])
        assert len(shown) + hidden == 60
        assert all(outcomes[name] == code for name, code in shown.items())

    def test_durations_ride_along_with_outcomes(self):
        text = encode_jobs({"backoffice": 0, "shield": "running"}, {"backoffice": 95.7})
        assert text == "backoffice=0@95,shield=running"
        assert decode_jobs(text) == {"backoffice": 0, "shield": "running"}
        assert decode_job_durations(text) == {"backoffice": 95}

    def test_malformed_entries_are_ignored(self):
        assert decode_jobs("a=0,=3,b c=1,d=") == {"a": 0}

    def test_only_ascii_digits_are_exit_codes_and_durations(self):
        # Tags are anyone's to write; int() would read an Arabic-Indic "\u0661" as 1.
        assert decode_jobs("a=\u0661,b=0@\u0662,c=3") == {"c": 3}


class TestAgentReport:
    def test_no_agent_tags_means_no_report(self):
        assert AgentReport.from_tags({"Name": "tasks_vm"}) is None

    def test_tags_round_trip(self):
        report = AgentReport(
            role="tasks",
            run_date="2026-11-23",
            state="running",
            heartbeat=NOW,
            progress="1/4",
            jobs={"backoffice": 0, "shield": "running"},
            durations={"backoffice": 120},
        )
        tags = report.to_tags()
        assert tags[TAG_HEARTBEAT] == "2026-11-23T00:30:00Z"
        assert tags[TAG_STATE] == "running"
        assert tags[TAG_JOBS] == "backoffice=0@120,shield=running"
        assert AgentReport.from_tags(tags) == report

    def test_heartbeat_age_and_completion(self):
        report = AgentReport(run_date="2026-11-23", state="succeeded", heartbeat=NOW)
        assert report.heartbeat_age(NOW + timedelta(seconds=95)) == 95
        assert report.is_complete_for("2026-11-23")
        assert not report.is_complete_for("2026-11-24")
        assert not AgentReport(run_date="2026-11-23", state="failed").is_complete_for("2026-11-23")

    def test_unparsable_heartbeat_reads_as_none(self):
        report = AgentReport.from_tags({TAG_STATE: "running", TAG_HEARTBEAT: "yesterday"})
        assert report.heartbeat is None
        assert report.heartbeat_age(NOW) is None


class TestNotice:
    def test_a_notice_round_trips_and_is_absent_when_there_is_none(self):
        report = AgentReport(state="interrupted", notice="spot-stop@2026-11-23T00:32:00Z")

        assert report.to_tags()[TAG_NOTICE] == "spot-stop@2026-11-23T00:32:00Z"
        assert AgentReport.from_tags(report.to_tags()) == report
        assert TAG_NOTICE not in AgentReport(state="running").to_tags()
