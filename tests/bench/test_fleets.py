"""Generated fleet configs and the scripts the hosts run."""

from __future__ import annotations

import pytest
from fleet_dag.builder import build_dag
from fleet_dag.config import parse_config

from bench import fleets


class TestFleetConfig:
    def test_n_roles_of_one_job_validate_and_build_the_dag(self):
        data = fleets.fleet_config(30, job_seconds=5, poll_interval=5)
        config = parse_config(data)

        assert [role.name for role in config.roles][:3] == ["w001", "w002", "w003"]
        assert len(config.roles) == 30
        assert len({role.instance for role in config.roles} | {config.signer.instance}) == 31
        assert config.poll_interval.total_seconds() == 5
        assert [job.name for job in config.roles[0].jobs] == ["job"]
        assert config.roles[0].jobs[0].argv[-3:] == ["job", "5", "0"]  # name, seconds, exit code
        # Seven tasks per role, plus the signer's start and stop.
        assert len(build_dag(config).tasks) == 30 * 7 + 3  # the chains, the signer pair, wait_turn

    def test_role_names_widen_past_999(self):
        names = fleets.role_names(1000)
        assert names[0] == "w0001" and names[-1] == "w1000"

    @pytest.mark.parametrize("count", [0, -1, 2.5, True])
    def test_a_fleet_needs_a_whole_number_of_roles(self, count):
        with pytest.raises(ValueError, match="at least 1 worker role"):
            fleets.role_names(count)

    def test_bad_timings_are_refused(self):
        with pytest.raises(ValueError, match="job_seconds must be positive"):
            fleets.fleet_config(1, job_seconds=0)
        with pytest.raises(ValueError, match="whole seconds"):
            fleets.fleet_config(1, poll_interval=2.5)

    def test_a_flows_fleet_puts_the_roles_on_given_instances_with_the_agent_set_up(self):
        base = fleets.fleet_config(2)
        data = fleets.for_flow(base, "i-0aaaaaaaaaaaaaaaa", ["i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"])
        config = parse_config(data)

        assert config.signer.instance == "i-0aaaaaaaaaaaaaaaa"
        assert [role.instance for role in config.roles] == ["i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"]
        assert config.agent.shutdown == "ec2" and config.agent.command[1:] == ["-m", "instance_agent"]
        with pytest.raises(ValueError, match="1 worker instances for 2 roles"):
            fleets.for_flow(base, "i-0aaaaaaaaaaaaaaaa", ["i-0bbbbbbbbbbbbbbbb"])


class TestScripts:
    def test_a_flows_fleet_is_one_named_role_over_the_first_worker_or_a_role_each(self):
        base = fleets.fleet_config(2)
        workers = ["i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"]

        one = parse_config(fleets.for_flow(base, "i-0aaaaaaaaaaaaaaaa", workers, one_role="fleet"))
        each = parse_config(fleets.for_flow(base, "i-0aaaaaaaaaaaaaaaa", workers, standin_seconds=5))

        assert [(role.name, role.instance) for role in one.roles] == [("fleet", "i-0bbbbbbbbbbbbbbbb")]
        assert [role.instance for role in each.roles] == workers
        assert each.agent.command[:2] == ["bash", "-c"] and one.agent.command[1:] == ["-m", "instance_agent"]

    def test_the_stand_in_sleeps_detached_then_stops_its_own_instance(self):
        script = fleets.standin_script(5)

        assert "setsid bash -c" in script and "standin 5 " in script
        assert "Action=StopInstances" in script and "latest/api/token" in script
        with pytest.raises(ValueError, match="job_seconds must be positive"):
            fleets.standin_script(0)

    def test_the_stand_ins_job_end_is_read_from_its_sandbox(self, tmp_path):
        assert fleets.standin_job_end(tmp_path) is None
        (tmp_path / fleets.STANDIN_JOB_END).write_text("1796154000.250\n")
        assert fleets.standin_job_end(tmp_path) == pytest.approx(1796154000.25)
