"""The real fleet_daily DAG on the fleet simulator, with faults: what fails, what recovers, what is said.

Each test starts a simulator (real agent, real jobs on simulated hosts, instances that really
stop) with faults injected, builds the DAG from a fleet config written for it, runs it with
``dag.test()`` and checks the task states, the jobs' runs on the hosts, the instances' states,
the agent's own state file and the messages in the task logs.
"""

from __future__ import annotations

import re
from collections import Counter

from airflow.sdk import DagRunState, TaskInstanceState

from fleet_sim import demo_job

SUCCESS, FAILED = TaskInstanceState.SUCCESS, TaskInstanceState.FAILED
UPSTREAM_FAILED = TaskInstanceState.UPSTREAM_FAILED
RUN_DATE = "2026-11-23"  # the logical date of every run here


def ignoring_sigterm(job: dict) -> dict:
    """A demo job that ignores SIGTERM: only SIGKILL (or the instance going down) ends it."""
    argv = list(job["argv"])
    argv[2] = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + argv[2]
    return {**job, "argv": argv}


def calls(fleet, operation: str) -> list[dict]:
    return [call for call in fleet.sim.api_calls() if call["operation"] == operation]


def fault_events(fleet, instance_id: str | None, kind: str) -> list[dict]:
    return [event for event in fleet.sim.timeline(instance_id, "fault") if event["fault"] == kind]


class TestFailingJobs:
    def test_a_failed_job_fails_its_role_only_and_the_signer_still_stops(self, run_fleet, capsys, notified):
        fleet = run_fleet(
            {
                "alpha": [demo_job("a1", seconds=1)],
                "beta": [demo_job("b1", seconds=1, exit_code=1), demo_job("b2", seconds=1)],
            }
        )
        beta = fleet.instance("beta")

        dag_run = fleet.run()

        log = capsys.readouterr().out
        assert dag_run.state == DagRunState.FAILED
        assert set(fleet.role_states(dag_run, "alpha").values()) == {SUCCESS}
        beta_states = fleet.role_states(dag_run, "beta")
        assert beta_states.pop("report") == FAILED
        assert set(beta_states.values()) == {SUCCESS}
        states = fleet.task_states(dag_run)
        assert (states["start_signer"], states["stop_signer"]) == (SUCCESS, SUCCESS)
        # The report names the failed job, its instance and its exit code, and only that job.
        assert f"Role beta failed for {RUN_DATE}: job b1 on {beta} exited with code 1" in log
        assert "job b2" not in log.split("Role beta failed for", 1)[1].splitlines()[0]
        # Each job ran once (the report is not retried), the failing one to its exit code.
        assert fleet.starts("beta") == Counter({"b1": 1, "b2": 1})
        ends = {(run["job"], run["event"]) for run in fleet.runs("beta") if run["event"] != "start"}
        assert ends == {("b1", "exit 1"), ("b2", "exit 0")}
        assert fleet.sim.agent_state(beta)["state"] == "failed"
        assert fleet.sim.agent_state(beta)["jobs"]["b1"]["exit_code"] == 1
        # The agent still stopped its VM; the signer was stopped by stop_signer.
        assert fleet.final_states() == dict.fromkeys(fleet.final_states(), "stopped")
        assert fleet.states(fleet.signer)[-2:] == ["stopping", "stopped"]
        # The DAG's failure notifier was called once, for this run.
        assert [context["reason"] for context in notified] == ["task_failure"]

    def test_a_job_hanging_past_max_runtime_gets_its_vm_force_stopped(self, run_fleet, capsys):
        # The agent gives up on its jobs at 90 % of max_runtime (5.4 s of 6 s: SIGTERM, SIGKILL 30 s later);
        # a job that ignores SIGTERM keeps the VM up past max_runtime, so the DAG must act.
        fleet = run_fleet(
            {"alpha": [ignoring_sigterm(demo_job("stuck", hang=True, timeout="5m"))]}, max_runtime="6s"
        )
        alpha = fleet.instance("alpha")

        dag_run = fleet.run()

        log = capsys.readouterr().out
        assert dag_run.state == DagRunState.FAILED
        states = fleet.role_states(dag_run, "alpha")
        assert states["run_agent"] == SUCCESS
        assert (states["wait_stopped"], states["report"]) == (FAILED, UPSTREAM_FAILED)
        assert f"Force-stopped {alpha}: Waiting for stopped timed out" in log
        # StopInstances with Force: every process of the host was killed at once.
        assert fleet.forced_stops(alpha)
        assert fleet.sim.state(alpha) == "stopped"
        assert fleet.starts("alpha") == Counter({"stuck": 1})
        assert not [run for run in fleet.runs("alpha") if run["event"].startswith("exit")]
        # The agent tried first, at its own bound (90 % of 6 s), and SIGTERM was not enough.
        agent_log = (fleet.sim.host(alpha).sandbox / "logs" / RUN_DATE / "_agent.log").read_text()
        assert "job stuck: stopped: the run's max_runtime of 5.4 s was reached: SIGTERM" in agent_log
        assert fleet.task_states(dag_run)["stop_signer"] == SUCCESS
        assert fleet.sim.state(fleet.signer) == "stopped"


class TestInstanceFaults:
    def test_a_spot_interruption_is_recorded_and_a_second_run_honours_rerun_on_interrupt(
        self, run_fleet, capsys
    ):
        # The notice is up as the agent's command starts; the agent starts its jobs, then reads
        # IMDS and finds it, stops its jobs, and EC2 reclaims (stops) the instance 4 s later.
        fleet = run_fleet(
            {
                "safe": [demo_job("s1", seconds=2, rerun_on_interrupt=True)],
                "once": [demo_job("o1", seconds=2, rerun_on_interrupt=False)],
            },
            scenario={
                "faults": [
                    {"kind": "spot_interruption", "role": role, "after": 0, "notice_seconds": 4}
                    for role in ("safe", "once")
                ]
            },
        )
        safe, once = fleet.instance("safe"), fleet.instance("once")

        first = fleet.run()

        log = capsys.readouterr().out
        assert first.state == DagRunState.FAILED
        for role, instance_id, job in (("safe", safe, "s1"), ("once", once, "o1")):
            state = fleet.sim.agent_state(instance_id)
            assert state["state"] == "interrupted"
            assert state["agent"]["interrupted_by"].startswith("spot interruption notice: stop at ")
            # Started by the agent (its record says `running` before the process exists), then cut
            # short: it never got to its end (it may not even have written its first line).
            record = state["jobs"][job]
            assert (record["status"], record["attempts"]) == ("interrupted", 1)
            assert record["started_at"] and record["pid"]
            assert not [run for run in fleet.runs(role) if run["event"] != "start"]
            assert fault_events(fleet, instance_id, "spot_reclaim")  # EC2 stopped it, not the DAG
            assert not fleet.forced_stops(instance_id)
            steps = fleet.role_states(first, role)
            assert (steps["wait_stopped"], steps["report"]) == (SUCCESS, FAILED)
            assert f"Role {role} failed for {RUN_DATE}: job {job} on {instance_id} ended interrupted" in log
        assert fleet.task_states(first)["stop_signer"] == SUCCESS

        second = fleet.run()

        log = capsys.readouterr().out
        assert second.state == DagRunState.FAILED
        # rerun_on_interrupt: true: run again, to success.
        assert set(fleet.role_states(second, "safe").values()) == {SUCCESS}
        assert [run["event"] for run in fleet.runs("safe")][-2:] == ["start", "exit 0"]
        safe_state = fleet.sim.agent_state(safe)
        assert (safe_state["state"], safe_state["jobs"]["s1"]["attempts"]) == ("succeeded", 2)
        # rerun_on_interrupt: false (the default): not run again, and the report says why.
        assert fleet.role_states(second, "once")["report"] == FAILED
        assert not [run for run in fleet.runs("once") if run["event"] != "start"]
        once_state = fleet.sim.agent_state(once)
        assert (once_state["state"], once_state["jobs"]["o1"]["attempts"]) == ("failed", 1)
        assert once_state["jobs"]["o1"]["status"] == "interrupted"
        assert f"Role once failed for {RUN_DATE}: job o1 on {once} ended interrupted" in log
        assert fleet.final_states() == dict.fromkeys(fleet.final_states(), "stopped")

    def test_throttled_calls_are_retried_until_they_succeed(self, run_fleet):
        throttled = {"DescribeInstances": 3, "StartInstances": 2, "SendCommand": 2}
        fleet = run_fleet(
            {"alpha": [demo_job("a1", seconds=1)]},
            scenario={
                "faults": [
                    {"kind": "throttle", "operation": operation, "count": count}
                    for operation, count in throttled.items()
                ]
            },
        )

        dag_run = fleet.run()

        assert dag_run.state == DagRunState.SUCCESS
        assert set(fleet.task_states(dag_run).values()) == {SUCCESS}
        for operation, count in throttled.items():
            made = calls(fleet, operation)
            refused = 503 if operation != "SendCommand" else 400  # EC2's and SSM's throttling answers
            assert [call["status"] for call in made[: count + 1]] == [refused] * count + [200], operation
            # The same caller retried: botocore's retries, not a later task or poll.
            assert len({call["caller"] for call in made[: count + 1]}) == 1, operation
        assert len(fault_events(fleet, None, "throttle")) == sum(throttled.values())
        assert fleet.starts("alpha") == Counter({"a1": 1})
        assert fleet.final_states() == dict.fromkeys(fleet.final_states(), "stopped")

    def test_no_capacity_for_the_first_candidate_starts_the_second(self, run_fleet, capsys):
        fleet = run_fleet(
            {"gamma": [demo_job("g1", seconds=1)]},
            candidates={"gamma": 2},
            # A user's connection with one retry: the capacity error reaches the operator quickly.
            connection_extra={"config_kwargs": {"retries": {"mode": "standard", "max_attempts": 1}}},
        )
        first, second = fleet.sim.instances_for("gamma")
        fleet.sim.inject({"kind": "capacity", "instance": first})

        dag_run = fleet.run()

        log = capsys.readouterr().out
        assert dag_run.state == DagRunState.SUCCESS
        assert set(fleet.task_states(dag_run).values()) == {SUCCESS}
        # The connection's retries reached the client: one try and one retry, not the default nine.
        refusals = fault_events(fleet, first, "capacity")
        assert [event["code"] for event in refusals] == ["InsufficientInstanceCapacity"] * 2
        assert f"Candidate {first} has no capacity (InsufficientInstanceCapacity); trying the next" in log
        assert fleet.states(first) == ["stopped"]  # never started
        assert fleet.states(second) == ["stopped", "pending", "running", "stopping", "stopped"]
        assert fleet.runs_on(first) == []
        assert fleet.starts("gamma") == Counter({"g1": 1})
        assert {run["event"] for run in fleet.runs("gamma")} == {"start", "exit 0"}
        report = {ti.task_id: ti for ti in dag_run.get_task_instances()}["gamma.report"]
        assert report.xcom_pull(task_ids="gamma.report")["g1"]["instance_id"] == second

    def test_a_slow_ssm_registration_is_waited_for(self, run_fleet):
        fleet = run_fleet(
            {"alpha": [demo_job("a1", seconds=1)]},
            scenario={"faults": [{"kind": "registration_delay", "role": "alpha", "seconds": 4}]},
        )
        alpha = fleet.instance("alpha")

        dag_run = fleet.run()

        assert dag_run.state == DagRunState.SUCCESS
        assert set(fleet.task_states(dag_run).values()) == {SUCCESS}
        tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
        assert tis["alpha.wait_ssm_online"].try_number == 1  # waited, not failed and retried
        running = next(e["t"] for e in fleet.sim.timeline(alpha, "state") if e["to"] == "running")
        (online,) = [e["t"] for e in fleet.sim.timeline(alpha, "ssm_online")]
        (sent,) = [e["t"] for e in fleet.sim.timeline(alpha, "command_sent")]
        assert online - running >= 4
        assert sent > online  # nothing was sent before the SSM agent was online
        assert fleet.starts("alpha") == Counter({"a1": 1})
        assert fleet.sim.state(alpha) == "stopped"

    def test_a_killed_agent_is_noticed_by_its_silent_heartbeat(self, run_fleet, capsys):
        # The job outlives its agent: nothing would stop the VM but the DAG.
        fleet = run_fleet(
            {"alpha": [demo_job("a1", seconds=15)]},
            heartbeat_grace="4s",
            scenario={"faults": [{"kind": "kill_agent", "role": "alpha", "after": 3}]},
        )
        alpha = fleet.instance("alpha")

        dag_run = fleet.run()

        log = capsys.readouterr().out
        assert dag_run.state == DagRunState.FAILED
        (killed,) = fault_events(fleet, alpha, "kill_agent")
        assert killed["pids"] and killed["signal"] == "SIGKILL"
        states = fleet.role_states(dag_run, "alpha")
        assert (states["wait_stopped"], states["report"]) == (FAILED, UPSTREAM_FAILED)
        silent = re.search(rf"agent on {alpha} silent for (\d+) s", log)
        assert silent, "the wait names the silent agent"
        assert int(silent.group(1)) >= 4  # past the 4 s grace (the message rounds)
        # The wait force-stopped the VM the agent could no longer stop, and said so.
        assert f"Force-stopped {alpha}: Waiting for stopped failed: agent on {alpha} silent for" in log
        assert fleet.forced_stops(alpha)
        assert fleet.sim.state(alpha) == "stopped"
        assert [run["event"] for run in fleet.runs("alpha")] == ["start"]  # killed with its VM
        # The agent's own record stops at `running`: it never got to finish the run.
        assert fleet.sim.agent_state(alpha)["state"] == "running"
        assert fleet.task_states(dag_run)["stop_signer"] == SUCCESS
        assert fleet.sim.state(fleet.signer) == "stopped"
