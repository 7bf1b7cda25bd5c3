"""fleet_daily as Airflow sees it: integrity, shape, params, run dates, the rendered command.

Integrity tests follow astro-cli's Airflow 3 template: one case per DAG file, and failure messages
that name the file and the dag_id.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.exceptions import ParamValidationError
from airflow.sdk import TriggerRule
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import TimeRestriction
from fleet_dag.builder import RUN_DATE, agent_spec, build_dag, poll_plan, run_date_for
from fleet_dag.config import DEFAULT_CONFIG_PATH, load_config, parse_config
from fleet_dag_testing import DAGS_FOLDER, ParseGuard, fleet_dict, parse_agent_command
from fleet_testing import role_named

from instance_agent.cli import build_parser
from instance_agent.spec import parse_spec

DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))
CHAIN = ["skip_if_done", "start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped", "report"]
UTC = pendulum.UTC


class TestDagIntegrity:
    def test_no_import_errors(self, parsed):
        bag, _ = parsed
        assert not bag.import_errors, "\n".join(
            f"{file}:\n{error}" for file, error in bag.import_errors.items()
        )

    def test_only_dag_files_are_parsed(self, parsed):
        # .airflowignore keeps the fleet_dag/ helper package out of the DAG processor's way.
        bag, _ = parsed
        assert sorted(Path(stat.file).name for stat in bag.dagbag_stats) == [f.name for f in DAG_FILES]

    def test_no_aws_call_and_no_variable_read_at_parse_time(self, parsed):
        _, guard = parsed
        assert guard.aws_calls == [], f"AWS calls while parsing dags/: {guard.aws_calls}"
        assert guard.variable_reads == [], f"Variable reads while parsing dags/: {guard.variable_reads}"

    def test_the_guard_catches_dag_files_that_call_aws_or_read_variables(self, tmp_path, monkeypatch):
        (tmp_path / "greedy_aws.py").write_text(
            "import boto3\n"
            "from airflow.sdk import DAG\n"
            "boto3.client('ec2', region_name='us-east-1').describe_instances()\n"
            "dag = DAG(dag_id='greedy_aws', schedule=None)\n"
        )
        (tmp_path / "greedy_variable.py").write_text(
            "from airflow.sdk import DAG, Variable\n"
            "dag = DAG(dag_id=Variable.get('fleet_dag_id'), schedule=None)\n"
        )
        guard = ParseGuard().install(monkeypatch)

        bag = DagBag(dag_folder=tmp_path, safe_mode=True)

        assert (guard.aws_calls, guard.variable_reads) == (["DescribeInstances"], ["fleet_dag_id"])
        assert (
            "AWS call DescribeInstances at parse time" in bag.import_errors[str(tmp_path / "greedy_aws.py")]
        )
        assert (
            "Variable.get('fleet_dag_id') at parse time"
            in bag.import_errors[str(tmp_path / "greedy_variable.py")]
        )

    @pytest.mark.parametrize("dag_file", DAG_FILES, ids=[f.name for f in DAG_FILES])
    def test_dag_file_conventions(self, parsed, dag_file):
        bag, _ = parsed
        assert str(dag_file) not in bag.import_errors, (
            f"{dag_file.name}: {bag.import_errors.get(str(dag_file))}"
        )
        dags = [d for d in bag.dags.values() if Path(d.fileloc) == dag_file]
        assert dags, f"{dag_file.name} defines no DAG"
        for d in dags:
            where = f"{dag_file.name}: DAG {d.dag_id}"
            assert d.tags, f"{where} has no tags"
            assert d.default_args.get("retries", 0) >= 1, f"{where} has no retries in default_args"
            assert d.doc_md and d.doc_md.strip(), f"{where} has no doc_md"
            assert d.catchup is False, f"{where} has catchup={d.catchup}"
            assert d.max_active_runs == 1, f"{where} allows {d.max_active_runs} active runs"
            assert d.start_date is not None and d.start_date.tzinfo is not None, (
                f"{where} has no static start_date"
            )


class TestDagShape:
    def test_one_group_per_role_and_nothing_else(self, dag, fleet):
        roles = [role.name for role in fleet.roles]
        assert sorted(dag.task_group.children) == sorted(["wait_turn", "start_signer", "stop_signer", *roles])
        for role in roles:
            group = dag.task_group.children[role]
            assert sorted(group.children) == sorted(f"{role}.{step}" for step in CHAIN), role
        assert len(dag.tasks) == 3 + len(roles) * len(CHAIN)

    @pytest.mark.parametrize("role", ["tasks", "hyperliquid", "uniswap"])
    def test_each_role_is_the_exact_chain(self, dag, role):
        t = {step: f"{role}.{step}" for step in CHAIN}
        upstream = {step: dag.get_task(t[step]).upstream_task_ids for step in CHAIN}
        # Later steps read the started instance from start's XCom, hence their extra edge to start.
        assert upstream == {
            "skip_if_done": {"wait_turn"},  # one run at a time on the fleet (test_fleet_wait_turn_dag.py)
            "start": {t["skip_if_done"]},
            "wait_running": {t["start"]},
            "wait_ssm_online": {t["wait_running"], t["start"]},
            # The worker boots while the signer does; its agent waits for the signer.
            "run_agent": {t["wait_ssm_online"], t["start"], "start_signer"},
            "wait_stopped": {t["run_agent"], t["start"]},
            "report": {t["wait_stopped"]},
        }
        # The signer stops once the workers are down; the reports run beside it.
        assert dag.get_task(t["wait_stopped"]).downstream_task_ids == {t["report"], "stop_signer"}
        assert dag.get_task(t["report"]).downstream_task_ids == set()
        assert all(dag.get_task(t[step]).trigger_rule == TriggerRule.ALL_SUCCESS for step in CHAIN)

    def test_signer_is_a_setup_and_teardown_pair_around_every_role(self, dag, fleet):
        start, stop = dag.get_task("start_signer"), dag.get_task("stop_signer")
        roles = [role.name for role in fleet.roles]
        assert start.is_setup and not start.is_teardown
        assert stop.is_teardown and not stop.is_setup
        # The signer boots only when some role has work (its skip_if_done did not skip it).
        assert start.upstream_task_ids == {f"{r}.skip_if_done" for r in roles}
        assert start.trigger_rule == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
        assert start.downstream_task_ids == {"stop_signer", *(f"{r}.run_agent" for r in roles)}
        assert stop.upstream_task_ids == {"start_signer", "wait_turn", *(f"{r}.wait_stopped" for r in roles)}
        # Runs once every role is done, whether it succeeded, failed or was skipped, and even
        # when start_signer failed after its StartInstances call went through: one setup (the
        # run's turn) succeeded. Not when wait_turn failed: the signer is then another run's.
        assert stop.trigger_rule == TriggerRule.ALL_DONE_SETUP_SUCCESS
        assert {setup.task_id for setup in stop.upstream_list if setup.is_setup} == {
            "start_signer",
            "wait_turn",
        }
        assert start.instance_ids == stop.instance_ids == [fleet.signer.instance]

    def test_agents_are_sent_their_command_only_once_the_signer_runs(self, dag, fleet):
        start = dag.get_task("start_signer")
        assert start.wait_for_completion is True
        # Waiting for the signer holds no worker slot, and gives up after boot_timeout.
        assert start.deferrable is True
        assert start.waiter_delay * start.waiter_max_attempts == 600
        for role in fleet.roles:
            assert "start_signer" in dag.get_task(f"{role.name}.run_agent").get_flat_relative_ids(
                upstream=True
            )

    def test_aws_steps_retry_with_exponential_backoff(self, dag):
        for task in dag.tasks:
            if task.task_id != "wait_turn":  # it asks Airflow's API, not AWS
                assert (task.aws_conn_id, task.region_name) == ("aws_default", "us-east-1"), task.task_id
            if task.task_id.endswith("report"):
                # A report reads final tags: no retry helps. (wait_stopped's final failures are
                # exceptions Airflow never retries; its retries cover AWS errors and lost tries.)
                assert task.retries == 0, task.task_id
                continue
            assert task.retries == 2, task.task_id
            assert task.retry_exponential_backoff, task.task_id
            assert task.retry_delay == timedelta(seconds=30), task.task_id
            assert task.max_retry_delay == timedelta(minutes=10), task.task_id

    def test_waits_are_deferrable_and_bounded(self, dag, fleet):
        role = role_named(fleet, "tasks")
        running = dag.get_task("tasks.wait_running")
        assert (running.deferrable, running.target_state, running.timeout) == (True, "running", 600)
        ssm = dag.get_task("tasks.wait_ssm_online")
        assert ssm.deferrable and (ssm.poke_interval, ssm.timeout) == (30, 600)
        stopped = dag.get_task("tasks.wait_stopped")
        assert stopped.deferrable and stopped.target_state == "stopped"
        assert stopped.timeout == role.max_runtime.total_seconds() == 4 * 3600
        assert stopped.stop_on_failure is True
        assert stopped.heartbeat_grace == role.heartbeat_grace.total_seconds() == 300
        assert stopped.poke_interval == 30
        stop_signer = dag.get_task("stop_signer")
        assert stop_signer.wait_for_completion and stop_signer.deferrable
        assert stop_signer.waiter_delay * stop_signer.waiter_max_attempts == 600

    def test_run_agent_is_safe_to_retry(self, dag):
        run_agent = dag.get_task("tasks.run_agent")
        assert run_agent.reuse_in_flight is True
        # The comment identifies the run's command for a retry: DAG, role and run date.
        assert run_agent.comment == f"fleet_daily tasks {RUN_DATE}"
        assert run_agent.deferrable is True

    def test_skip_if_done_looks_at_every_candidate(self):
        data = fleet_dict()
        data["roles"][0].pop("instance")
        data["roles"][0]["candidates"] = ["i-0000000000000000c", "i-0000000000000000d"]
        built = build_dag(parse_config(data))
        assert built.get_task("tasks.skip_if_done").instance_ids == [
            "i-0000000000000000c",
            "i-0000000000000000d",
        ]
        start = built.get_task("tasks.start")
        assert (start.instance_ids, start.candidates) == (
            None,
            ["i-0000000000000000c", "i-0000000000000000d"],
        )


class TestPollPlan:
    @pytest.mark.parametrize(
        ("poll_interval", "bound", "at_most", "plan"),
        [
            ("30s", timedelta(minutes=10), None, (30, 20)),  # the boot waits at the defaults
            ("30s", timedelta(minutes=5), 5, (5, 60)),  # run_agent's command wait
            ("7s", timedelta(minutes=10), None, (7, 85)),  # whole polls only
            (0.5, timedelta(seconds=3), None, (1, 3)),  # never faster than once a second
            ("1h", timedelta(minutes=10), None, (3600, 1)),  # at least one poll
        ],
    )
    def test_every_wait_polls_in_whole_seconds_within_its_bound(self, poll_interval, bound, at_most, plan):
        config = parse_config(fleet_dict(poll_interval=poll_interval))
        assert poll_plan(config, bound, at_most=at_most) == plan


@pytest.fixture(scope="module")
def trigger_params(dag):
    """What a trigger's conf is validated against: the serialized DAG's params (create_dagrun)."""
    serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    return lambda conf: serialized.params.deep_merge(conf).validate()


class TestParams:
    def test_defaults_run_every_role_without_force(self, trigger_params):
        assert trigger_params({}) == {"force": False, "roles": ["tasks", "hyperliquid", "uniswap"]}

    def test_a_subset_of_roles_and_force(self, trigger_params):
        assert trigger_params({"roles": ["uniswap"], "force": True}) == {"force": True, "roles": ["uniswap"]}

    @pytest.mark.parametrize(
        ("conf", "param"),
        [
            ({"roles": ["tasks", "pricing"]}, "roles"),
            ({"roles": []}, "roles"),
            ({"roles": ["tasks", "tasks"]}, "roles"),
            ({"roles": "tasks"}, "roles"),
            ({"force": "yes"}, "force"),
            ({"force": 1}, "force"),
        ],
    )
    def test_invalid_values_are_rejected(self, trigger_params, conf, param):
        with pytest.raises(ParamValidationError, match=f"Invalid input for param {param}"):
            trigger_params(conf)


def _dag_run(logical_date=None, run_after=None):
    return SimpleNamespace(logical_date=logical_date, run_after=run_after)


class _XComs:
    """The task instance of a render: ``start`` returned the role's instance."""

    def __init__(self, values):
        self.values = values

    def xcom_pull(self, task_ids, key="return_value", **kwargs):
        return self.values[task_ids, key]


def _render(task, dag, dag_run, **params):
    params = {"force": False, "roles": ["tasks", "hyperliquid", "uniswap"], **params}
    role = task.task_group.group_id
    ti = _XComs(
        {
            (f"{role}.start", "return_value"): ["i-0123456789abcdef0"],
            (f"{role}.wait_stopped", "return_value"): {
                "i-0123456789abcdef0": {"state": "stopped", "tags": {}}
            },
        }
    )
    context = {"dag": dag, "dag_run": dag_run, "params": params, "ti": ti}
    task.render_template_fields(context, dag.get_template_env())
    return task


class TestRunDate:
    def test_the_scheduled_midnight_run_is_about_that_day(self, dag):
        restriction = TimeRestriction(
            earliest=pendulum.datetime(2026, 11, 22, 12, tz=UTC), latest=None, catchup=True
        )
        info = dag.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        assert info.logical_date == pendulum.datetime(2026, 11, 23, tz=UTC)
        assert run_date_for(_dag_run(info.logical_date, info.run_after), "UTC") == "2026-11-23"

    def test_in_the_fleets_timezone(self):
        ny = build_dag(parse_config(fleet_dict(timezone="America/New_York")))
        restriction = TimeRestriction(
            earliest=pendulum.datetime(2026, 11, 22, 12, tz=UTC), latest=None, catchup=True
        )
        info = ny.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        # Midnight in New York is 05:00 UTC in November.
        assert info.logical_date == pendulum.datetime(2026, 11, 23, 5, tz=UTC)
        assert run_date_for(_dag_run(info.logical_date), "America/New_York") == "2026-11-23"
        # 04:59 UTC is still the evening before in New York.
        assert run_date_for(_dag_run(pendulum.datetime(2026, 11, 23, 4, 59, tz=UTC)), "America/New_York") == (
            "2026-11-22"
        )

    def test_a_manual_run_without_logical_date_uses_run_after(self):
        dag_run = _dag_run(None, pendulum.datetime(2026, 11, 23, 23, 30, tz=UTC))
        assert run_date_for(dag_run, "UTC") == "2026-11-23"
        assert run_date_for(dag_run, "Europe/Madrid") == "2026-11-24"

    def test_a_backfill_runs_the_past_day(self):
        dag_run = _dag_run(pendulum.datetime(2026, 10, 2, tz=UTC), pendulum.datetime(2026, 11, 23, 9, tz=UTC))
        assert run_date_for(dag_run, "UTC") == "2026-10-02"

    def test_a_run_with_no_date_at_all_is_refused(self):
        with pytest.raises(ValueError, match="neither a logical date nor run_after"):
            run_date_for(_dag_run(), "UTC")


class TestRenderedAgentCommand:
    @pytest.fixture
    def fresh_dag(self):
        # Rendering mutates the tasks: each test gets its own DAG.
        return build_dag(load_config(DEFAULT_CONFIG_PATH))

    def test_command_carries_the_run_date_role_and_spec(self, fresh_dag, fleet):
        task = _render(
            fresh_dag.get_task("tasks.run_agent"),
            fresh_dag,
            _dag_run(pendulum.datetime(2026, 11, 23, tz=UTC)),
        )

        script = task.parameters["commands"][0]
        invocation = parse_agent_command(script)
        assert invocation["argv"] == [
            "python3",
            "-m",
            "instance_agent",
            "run",
            "--role",
            "tasks",
            "--date",
            "2026-11-23",
            "--spec",
            "-",
            "--state-dir",
            "/var/lib/fleet-agent",
            "--log-dir",
            "/var/log/fleet-agent",
            "--shutdown",
            "os",
        ]
        assert invocation["force"] is False
        assert invocation["spec"] == agent_spec(fleet, role_named(fleet, "tasks"))
        assert invocation["spec"]["jobs"][0]["argv"] == [
            "/root/backoffice/venv/bin/python",
            "aws_run.py",
        ]
        assert task.instance_ids == ["i-0123456789abcdef0"]
        assert task.comment == "fleet_daily tasks 2026-11-23"

    def test_every_step_of_the_role_renders_the_same_run_date(self, fresh_dag):
        dag_run = _dag_run(pendulum.datetime(2026, 10, 2, tz=UTC), pendulum.datetime(2026, 11, 23, 9, tz=UTC))
        dates = {
            step: _render(fresh_dag.get_task(f"uniswap.{step}"), fresh_dag, dag_run).run_date
            for step in ("skip_if_done", "wait_stopped", "report")
        }
        assert dates == dict.fromkeys(("skip_if_done", "wait_stopped", "report"), "2026-10-02")

    @pytest.mark.parametrize(("force", "flag"), [(True, True), (False, False)])
    def test_force_only_when_the_run_asks(self, fresh_dag, force, flag):
        task = _render(
            fresh_dag.get_task("hyperliquid.run_agent"),
            fresh_dag,
            _dag_run(pendulum.datetime(2026, 11, 23, tz=UTC)),
            force=force,
        )
        assert parse_agent_command(task.parameters["commands"][0])["force"] is flag

    def test_the_agent_accepts_the_command_and_the_spec(self, fresh_dag):
        """The contract with instance_agent: its own CLI parser and spec validation take what we send."""
        task = _render(
            fresh_dag.get_task("tasks.run_agent"),
            fresh_dag,
            _dag_run(pendulum.datetime(2026, 11, 23, tz=UTC)),
            force=True,
        )
        invocation = parse_agent_command(task.parameters["commands"][0])

        args = build_parser().parse_args(invocation["argv"][3:])
        assert (args.command, args.role, args.date, args.spec, args.force, args.shutdown) == (
            "run",
            "tasks",
            "2026-11-23",
            "-",
            True,
            "os",
        )
        spec = parse_spec(json.dumps(invocation["spec"]), "stdin")
        assert spec.job_names == ["backoffice", "uniswap2", "hyperliquid", "shield"]
        # 4 h less the 5 min margin: the agent ends the jobs before the DAG would force-stop.
        assert spec.max_runtime == 4 * 3600 - 300

    def test_the_spec_reaches_the_agent_byte_for_byte(self):
        # Braces and quotes in a job's argv must survive both Jinja and the shell.
        data = fleet_dict(s3_log_prefix="s3://fleet-logs/agent")
        data["roles"][0]["jobs"][0]["argv"] = ["python", "-c", "print('{{ ds }}', \"$HOME\", `id`)"]
        # Even the end of the raw block the spec sits in, and a comment opener, stay text.
        data["roles"][0]["jobs"][0]["env"] = {
            "JINJA": "{% if x %}y{% endif %}",
            "ESCAPE": "{% endraw %}{{ 7*7 }}{%- endraw -%}{# #}{{",
        }
        config = parse_config(data)
        built = build_dag(config)
        task = _render(
            built.get_task("tasks.run_agent"), built, _dag_run(pendulum.datetime(2026, 11, 23, tz=UTC))
        )

        invocation = parse_agent_command(task.parameters["commands"][0])
        assert invocation["spec"] == agent_spec(config, role_named(config, "tasks"))
        assert invocation["spec"]["jobs"][0]["argv"][2] == "print('{{ ds }}', \"$HOME\", `id`)"
        assert invocation["spec"]["jobs"][0]["env"]["ESCAPE"] == "{% endraw %}{{ 7*7 }}{%- endraw -%}{# #}{{"
        assert invocation["spec"]["s3_log_prefix"] == "s3://fleet-logs/agent"
