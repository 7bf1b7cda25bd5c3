"""The real agent on a simulated host: started through SSM, reporting on tags, stopping itself."""

from __future__ import annotations

import json
from datetime import timedelta

from fleet_sim_testing import boot, described, events, send, wait_ended
from fleet_testing import wait_for

from fleet_sim import demo_job, demo_runs
from instance_agent.protocol import AgentReport

RUN_DATE = "2026-11-23"


def agent_command(role: str, jobs: list[dict], *extra: str) -> str:
    spec = {
        "jobs": [{key: job[key] for key in ("name", "argv")} for job in jobs],
        "heartbeat_seconds": 1,
        "kill_grace_seconds": 1,
    }
    options = " ".join(extra)
    return (
        f"python3 -m instance_agent run --role {role} --date {RUN_DATE} --spec - --shutdown ec2 "
        f"--state-dir state --log-dir logs {options} <<'SPEC'\n{json.dumps(spec)}\nSPEC"
    )


def report(sim, instance_id: str) -> AgentReport | None:
    tags = described(sim.client("ec2"), instance_id).get("Tags", [])
    return AgentReport.from_tags({tag["Key"]: tag["Value"] for tag in tags})


class TestRealAgent:
    def test_the_agent_runs_its_jobs_reports_on_tags_and_stops_its_instance(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        command_id = send(
            ssm,
            instance_id,
            agent_command("tasks", [demo_job("backoffice", seconds=1), demo_job("shield", seconds=1.5)]),
        )

        invocation = wait_ended(ssm, command_id, instance_id)
        assert invocation["Status"] == "Success", invocation["StandardErrorContent"]
        plan = json.loads(invocation["StandardOutputContent"])
        assert plan["status"] == "started"
        assert sorted(plan["run"]) == ["backoffice", "shield"]
        sim.wait_for_state(instance_id, "stopped", timeout=20)
        final = report(sim, instance_id)
        assert final is not None
        assert (final.role, final.run_date, final.state, final.progress) == (
            "tasks",
            RUN_DATE,
            "succeeded",
            "2/2",
        )
        assert final.jobs == {"backoffice": 0, "shield": 0}
        runs = demo_runs(sim.host(instance_id).sandbox)
        assert sorted((run["job"], run["event"]) for run in runs) == [
            ("backoffice", "exit 0"),
            ("backoffice", "start"),
            ("shield", "exit 0"),
            ("shield", "start"),
        ]
        assert {run["date"] for run in runs} == {RUN_DATE}
        idle = sim.worker_idle(instance_id)
        assert 0 <= idle["idle_seconds"] < 2
        assert idle["stopped_at"] > idle["stopping_at"]
        assert sim.agent_state(instance_id)["state"] == "succeeded"

    def test_an_agent_killed_mid_run_leaves_the_instance_running_with_a_stale_heartbeat(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)
        send(ssm, instance_id, agent_command("tasks", [demo_job("backoffice", seconds=3)]))
        running = wait_for(lambda: (r := report(sim, instance_id)) is not None and r.state == "running" and r)

        sim.inject({"kind": "kill_agent", "role": "tasks", "since": "start"})

        killed = wait_for(lambda: events(sim, instance_id, "fault", fault="kill_agent"))
        assert killed[0]["pids"], "the agent's supervisor was running"
        wait_for(
            lambda: any(run["event"] == "exit 0" for run in demo_runs(sim.host(instance_id).sandbox)),
            timeout=10,
        )
        assert not any("instance_agent" in line for line in sim.host(instance_id).processes().values())
        assert sim.state(instance_id) == "running"  # nobody stops it: the DAG must notice
        final = report(sim, instance_id)
        assert final.state == "running"
        assert final.heartbeat <= running.heartbeat + timedelta(seconds=2)

    def test_a_spot_interruption_interrupts_the_agent_and_the_instance_is_reclaimed(self, make_sim):
        sim = make_sim(
            scenario={
                "faults": [{"kind": "spot_interruption", "role": "tasks", "after": 1.0, "notice_seconds": 3}]
            }
        )
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        send(
            ssm,
            instance_id,
            agent_command("tasks", [demo_job("backoffice", hang=True)], "--imds-poll-seconds 0.2"),
        )

        # The agent tags `interrupted` at once on the notice (the deadline is short), then the
        # jobs' outcomes once it has stopped them: wait for the latter.
        final = wait_for(
            lambda: (
                (r := report(sim, instance_id)) is not None
                and r.state == "interrupted"
                and "running" not in r.jobs.values()
                and r
            ),
            timeout=10,
        )
        assert final.notice.startswith("spot-stop@")
        assert final.jobs == {"backoffice": "interrupted"}
        sim.wait_for_state(instance_id, "stopped", timeout=10)
        assert events(sim, instance_id, "fault", fault="spot_reclaim")
