"""Scenario files and the fleet config rewritten onto the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fleet_dag.config import parse_config
from fleet_sim_testing import boot, send, wait_ended
from fleet_testing import role_named
from fleet_testing import wait_for as wait_until

from fleet_sim import Scenario, ScenarioError, demo_job, demo_runs, load_scenario, sim_fleet_config
from fleet_sim.fleet_config import fleet_roles
from fleet_sim.timeline import Timeline


class TestScenario:
    def test_a_scenario_file_with_every_fault_kind(self, tmp_path):
        path = tmp_path / "scenario.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "transition_delay": 1,
                    "registration_delay": 2.5,
                    "faults": [
                        {"kind": "throttle", "operation": "StartInstances", "count": 3},
                        {"kind": "capacity", "instance": "i-0123456789abcdef0"},
                        {"kind": "stuck_stopping", "role": "tasks", "seconds": 30},
                        {"kind": "registration_delay", "role": "uniswap", "seconds": 20},
                        {"kind": "spot_interruption", "role": "tasks", "after": 5, "action": "terminate"},
                        {"kind": "rebalance", "role": "tasks", "since": "running"},
                        {"kind": "kill_agent", "role": "hyperliquid", "after": 3, "signal": "TERM"},
                    ],
                }
            )
        )

        scenario = load_scenario(path)

        assert (scenario.transition_delay, scenario.registration_delay) == (1.0, 2.5)
        assert [fault.kind for fault in scenario.faults] == [
            "throttle",
            "capacity",
            "stuck_stopping",
            "registration_delay",
            "spot_interruption",
            "rebalance",
            "kill_agent",
        ]
        assert scenario.faults[0].count == 3
        assert scenario.faults[1].count is None  # a capacity fault lasts until removed
        assert scenario.faults[2].count == 1  # only the next stop hangs
        assert scenario.faults[4].notice_seconds == 120
        assert scenario.faults[6].to_dict()["signal"] == "SIGTERM"
        assert load_scenario(scenario.to_dict()) == scenario

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            (
                {"transition_delay": -1},
                "scenario: transition_delay: expected a number of seconds (0 or more), got -1",
            ),
            ({"delays": 1}, "scenario: unknown key 'delays'"),
            ({"faults": [{"kind": "flood"}]}, "scenario: faults[0].kind: expected one of throttle, capacity"),
            ({"faults": [{"kind": "throttle"}]}, "scenario: faults[0].operation: missing"),
            (
                {"faults": [{"kind": "stuck_stopping", "seconds": 3}]},
                "faults[0]: give exactly one of 'role' or 'instance'",
            ),
            (
                {"faults": [{"kind": "capacity", "role": "tasks", "count": 0}]},
                "faults[0].count: expected a whole number of at least 1, got 0",
            ),
            (
                {"faults": [{"kind": "kill_agent", "role": "tasks", "since": "noon"}]},
                "faults[0].since: expected one of command, running, start, got 'noon'",
            ),
            (
                {"faults": [{"kind": "throttle", "operation": "X", "role": "t"}]},
                "unknown key 'role' for a throttle",
            ),
        ],
    )
    def test_errors_name_the_field_and_the_bad_value(self, document, message):
        with pytest.raises(ScenarioError) as error:
            load_scenario(document)

        assert message in str(error.value)

    def test_the_check_command_validates_a_file(self, tmp_path):
        good, bad = tmp_path / "good.json", tmp_path / "bad.yaml"
        good.write_text(json.dumps({"faults": [{"kind": "throttle", "operation": "SendCommand"}]}))
        bad.write_text("faults: [{kind: stuck_stopping, role: tasks}]\n")

        ok = subprocess.run(
            [sys.executable, "-m", "fleet_sim", "check", str(good)], capture_output=True, text=True
        )
        refused = subprocess.run(
            [sys.executable, "-m", "fleet_sim", "check", str(bad)], capture_output=True, text=True
        )

        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["faults"][0]["operation"] == "SendCommand"
        assert refused.returncode == 2
        assert f"{bad}: faults[0].seconds: missing" in refused.stderr

    def test_defaults(self):
        assert load_scenario(None) == Scenario()
        assert Timeline().states("i-none") == []


class TestFleetConfig:
    def test_the_config_is_rewritten_onto_the_simulated_instances_and_stays_valid(self, make_sim):
        sim = make_sim(fleet_config="dags/fleet.yaml")

        config = sim_fleet_config("dags/fleet.yaml", sim, failing=["shield"], hanging=["uniswap"])

        model = parse_config(config, "sim fleet config")
        assert model.signer.instance == sim.instance_for("signer")
        assert {role.name: role.instance for role in model.roles} == {
            name: sim.instance_for(name) for name in ("tasks", "hyperliquid", "uniswap")
        }
        assert model.agent.command == [sys.executable, "-m", "instance_agent"]
        assert (model.agent.state_dir, model.agent.log_dir, model.agent.shutdown) == ("state", "logs", "ec2")
        tasks = role_named(model, "tasks")
        assert [job.name for job in tasks.jobs] == ["backoffice", "uniswap2", "hyperliquid", "shield"]
        assert tasks.jobs[3].argv[-1] == "1"  # shield exits 1
        assert role_named(model, "uniswap").jobs[0].argv[-2] == "86400"  # hangs
        assert tasks.max_runtime.total_seconds() == 300

    def test_roles_with_candidates_get_one_instance_per_candidate(self, make_sim, tmp_path):
        base = yaml.safe_load(Path("dags/fleet.yaml").read_text())
        base["roles"][0].pop("instance")
        base["roles"][0]["candidates"] = ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"]
        sim = make_sim(fleet_config=base)

        config = sim_fleet_config(base, sim)

        assert fleet_roles(base)["tasks"] == 2
        assert config["roles"][0]["candidates"] == sim.instances_for("tasks")
        assert len(set(sim.instances_for("tasks"))) == 2
        parse_config(config)

    def test_a_demo_job_prints_records_its_run_and_exits_with_its_code(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)
        job = demo_job("shield", seconds=0.6, exit_code=4)

        command_id = send(
            ssm, instance_id, "RUN_DATE=2026-11-23 ROLE=tasks " + " ".join(_quote(a) for a in job["argv"])
        )

        invocation = wait_ended(ssm, command_id, instance_id)
        assert invocation["ResponseCode"] == 4
        assert "shield: step 1/1 for 2026-11-23 on tasks" in invocation["StandardOutputContent"]
        assert "failing with exit code 4" in invocation["StandardErrorContent"]
        runs = wait_until(lambda: demo_runs(sim.host(instance_id).sandbox))
        assert [(run["job"], run["event"]) for run in runs] == [("shield", "start"), ("shield", "exit 4")]


def _quote(argument: str) -> str:
    return "'" + argument.replace("'", "'\"'\"'") + "'"


class TestInitialState:
    def test_instances_can_start_out_running_and_register_on_their_own(self, make_sim):
        sim = make_sim(scenario={"initial_state": "running"})
        instance_id = sim.instance_for("tasks")

        assert sim.state(instance_id) == "running"
        wait_until(lambda: sim.describe()["hosts"][instance_id]["ssm"] == "Online", timeout=5)
