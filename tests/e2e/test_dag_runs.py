"""The real fleet_daily DAG on the fleet simulator: a daily run, a second run of the date, a forced one.

Each test starts a simulator (real agent, real jobs on simulated hosts, instances that really
stop), builds the DAG from a fleet config written for it and runs it with ``dag.test()``.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

from airflow.sdk import DagRunState, TaskInstanceState

from fleet_sim import demo_job

SUCCESS, SKIPPED = TaskInstanceState.SUCCESS, TaskInstanceState.SKIPPED
RUN_DATE = "2026-11-23"  # the logical date of every run here


def two_roles() -> dict[str, list[dict]]:
    return {
        "alpha": [demo_job("a1", seconds=1), demo_job("a2", seconds=1)],
        "beta": [demo_job("b1", seconds=1)],
    }


def api_calls(fleet, operation: str, since: float) -> list[dict]:
    return [call for call in fleet.sim.api_calls(since=since) if call["operation"] == operation]


class TestDailyRun:
    def test_each_role_runs_its_jobs_once_in_the_design_order_and_every_vm_ends_stopped(self, run_fleet):
        fleet = run_fleet(two_roles())
        workers = {role: fleet.instance(role) for role in ("alpha", "beta")}

        dag_run = fleet.run()

        assert dag_run.state == DagRunState.SUCCESS
        tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
        expected = ["wait_turn", "start_signer", "stop_signer"] + [
            f"{r}.{step}" for r in workers for step in fleet.chain
        ]
        assert fleet.task_states(dag_run) == dict.fromkeys(sorted(expected), SUCCESS)
        # The order of docs/architecture.md: each role's chain step after step, the signer started once a
        # role has work and before any agent is called, and stopped last.
        for role in workers:
            chain = [f"{role}.{step}" for step in fleet.chain]
            signer = [
                (f"{role}.skip_if_done", "start_signer"),
                ("start_signer", f"{role}.run_agent"),
                (f"{role}.wait_stopped", "stop_signer"),
            ]
            for earlier, later in [*itertools.pairwise(chain), *signer]:
                assert tis[earlier].end_date <= tis[later].start_date, f"{later} began before {earlier} ended"

        # Each job ran once, with the run's logical date as RUN_DATE and its role as ROLE.
        assert fleet.starts("alpha") == Counter({"a1": 1, "a2": 1})
        assert fleet.starts("beta") == Counter({"b1": 1})
        for role in workers:
            runs = fleet.runs(role)
            assert {(run["date"], run["role"]) for run in runs} == {(RUN_DATE, role)}
            ended = sorted(run["job"] for run in runs if run["event"] == "exit 0")
            assert ended == sorted(fleet.starts(role))

        # Every VM is stopped; each worker was booted once and stopped by its own agent (no force).
        assert fleet.final_states() == dict.fromkeys([fleet.signer, *workers.values()], "stopped")
        for worker in workers.values():
            assert fleet.states(worker) == ["stopped", "pending", "running", "stopping", "stopped"]
            assert not fleet.forced_stops(worker)
            assert fleet.sim.agent_state(worker)["state"] == "succeeded"
            assert fleet.sim.worker_idle(worker)["idle_seconds"] < 5
        # The signer was up before any agent got its command, and went down after the last worker.
        signer_up = fleet.sim.timeline(fleet.signer, "state")
        running_at = next(event["t"] for event in signer_up if event["to"] == "running")
        stopping_at = next(event["t"] for event in signer_up if event["to"] == "stopping")
        sent = [e["t"] for worker in workers.values() for e in fleet.sim.timeline(worker, "command_sent")]
        workers_down = [
            event["t"]
            for worker in workers.values()
            for event in fleet.sim.timeline(worker, "state")
            if event["to"] == "stopped"
        ]
        assert len(sent) == 2
        assert running_at < min(sent)
        assert stopping_at > max(workers_down)

        # The report task returns every job's outcome.
        report = tis["alpha.report"].xcom_pull(task_ids="alpha.report")
        assert {job: entry["outcome"] for job, entry in report.items()} == {"a1": 0, "a2": 0}
        assert {entry["instance_id"] for entry in report.values()} == {workers["alpha"]}

    def test_a_second_run_for_the_same_date_skips_every_role_and_boots_no_vm(self, run_fleet, capsys):
        fleet = run_fleet(two_roles())
        assert fleet.run().state == DagRunState.SUCCESS
        capsys.readouterr()
        before = time.time()

        again = fleet.run()

        log = capsys.readouterr().out
        assert again.state == DagRunState.SUCCESS
        for role in ("alpha", "beta"):
            # skip_if_done skipped the role, and with it every later step of its group.
            assert fleet.role_states(again, role) == dict.fromkeys(fleet.chain, SKIPPED)
            assert f"Role {role} already completed {RUN_DATE} on {fleet.instance(role)}" in log
            assert fleet.states(fleet.instance(role), since=before) == []  # never pending, never running
        assert "its VM is not booted" in log
        assert fleet.starts("alpha") == Counter({"a1": 1, "a2": 1})
        assert fleet.starts("beta") == Counter({"b1": 1})
        # Nothing had work: not even the signer was booted, and no command went anywhere.
        states = fleet.task_states(again)
        assert (states["start_signer"], states["stop_signer"]) == (SKIPPED, SUCCESS)
        assert fleet.states(fleet.signer, since=before) == []
        assert api_calls(fleet, "StartInstances", before) == []
        assert api_calls(fleet, "SendCommand", before) == []
        assert fleet.final_states() == dict.fromkeys(fleet.final_states(), "stopped")

    def test_force_runs_every_job_again_and_says_so(self, run_fleet, capsys):
        fleet = run_fleet(two_roles())
        assert fleet.run().state == DagRunState.SUCCESS
        capsys.readouterr()

        forced = fleet.run(force=True)

        log = capsys.readouterr().out
        assert forced.state == DagRunState.SUCCESS
        assert set(fleet.task_states(forced).values()) == {SUCCESS}
        assert fleet.starts("alpha") == Counter({"a1": 2, "a2": 2})
        assert fleet.starts("beta") == Counter({"b1": 2})
        for role in ("alpha", "beta"):
            worker = fleet.instance(role)
            assert {run["date"] for run in fleet.runs(role)} == {RUN_DATE}
            # The DAG says so, the agent says so (its JSON line and its state file).
            assert (
                f"FORCE: role {role} already completed {RUN_DATE} on {worker}, running every job again" in log
            )
            state = fleet.sim.agent_state(worker)
            assert state["agent"]["force"] is True
            assert state["state"] == "succeeded"
            assert {name: job["attempts"] for name, job in state["jobs"].items()} == dict.fromkeys(
                fleet.starts(role), 2
            )
            assert fleet.states(worker).count("running") == 2
        assert log.count('"force":true') == 2
        assert fleet.final_states() == dict.fromkeys(fleet.final_states(), "stopped")
