"""docker-compose.yaml, checked statically: no Docker engine runs here (docs/testing.md).

What a user running ``docker compose up --build`` would otherwise find out the hard way: a file
Compose rejects, a floating image tag, a bind mount of a path the repository lacks, a triggerer
that cannot import the operators' ``instance_agent.protocol``, a service that starts before what
it needs, or an ``aws_default`` connection that reaches real AWS instead of the simulator.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
IMAGE_REQUIREMENTS = REPO / "deploy" / "docker" / "requirements-image.txt"

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
# Every service that runs Airflow code, and so imports the plugins (and instance_agent).
AIRFLOW_SERVICES = [*AIRFLOW_COMPONENTS, "airflow-init", "airflow-cli"]
SIMULATOR = "fleet-sim"
# The configs the simulator writes for Airflow: its option, and the variable Airflow reads it from.
WRITTEN_CONFIGS = [("--write-config", "FLEET_CONFIG"), ("--write-pool-config", "FLEET_POOL_CONFIG")]
# Host paths Compose mounts that the repository does not hold: README's `mkdir -p logs config`
# creates them (Docker would too, owned by root).
CREATED_BY_DOCUMENTED_STEP = {"logs", "config"}
# Test-only tools in requirements.txt: not needed in the image.
TEST_ONLY_REQUIREMENTS = {
    "pytest",
    "pytest-asyncio",
    "hypothesis",
    "time-machine",
    "ruff",
    "parliament",
    "check-jsonschema",
}


def _load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def compose_schema_validator() -> jsonschema.protocols.Validator:
    """The compose specification's schema as vendored by check-jsonschema (no network)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR-default}`` / ``$$``, with every variable unset."""
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    return value.replace("$$", "$")


def mounts(service: dict) -> list[tuple[str, str, str]]:
    """``(kind, source, target)`` for each short-syntax volume: kind is ``bind`` or ``volume``."""
    result = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax, got {entry!r}"
        source, target, *_ = entry.split(":")
        kind = "bind" if source.startswith((".", "/")) else "volume"
        result.append((kind, source, target))
    return result


def resolve(service: dict, container_path: str) -> tuple[str, str, PurePosixPath] | None:
    """Which mount holds ``container_path``: ``(kind, source, path inside the source)``."""
    path = PurePosixPath(container_path)
    best = None
    for kind, source, target in mounts(service):
        target_path = PurePosixPath(target)
        holds = path == target_path or target_path in path.parents
        if holds and (best is None or len(target_path.parts) > len(best[2].parts)):
            best = (kind, source, target_path)
    if best is None:
        return None
    kind, source, target_path = best
    return kind, source, path.relative_to(target_path)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment"
    return {key: interpolate(str(value)) for key, value in env.items()}


def simulator_argv(services: dict) -> list[str]:
    """The ``python -m fleet_sim ...`` argv inside the simulator's command."""
    command = services[SIMULATOR]["command"]
    script = command[-1] if command[:2] == ["bash", "-c"] else shlex.join(command)
    for part in interpolate(script).split("&&"):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv[:3] == ["python", "-m", "fleet_sim"]:
            return argv
    raise AssertionError(f"{SIMULATOR} does not run python -m fleet_sim: {command!r}")


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def pins(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name[extra]==version`` lines of a requirements file."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        result[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return result


def dockerfile_bases() -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)


class TestComposeFile:
    def test_it_is_valid_under_the_compose_specification(self, compose):
        errors = sorted(compose_schema_validator().iter_errors(compose), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)

    @pytest.mark.parametrize(
        ("mutation", "where"),
        [
            (
                lambda c: c["services"]["airflow-scheduler"]["depends_on"]["postgres"].update(
                    condition="service_ready"
                ),
                "depends_on",
            ),
            (lambda c: c["services"]["postgres"]["healthcheck"].update(interval=10), "healthcheck"),
            (lambda c: c["services"]["airflow-triggerer"].update(volume=["./plugins:/p"]), "volume"),
        ],
        ids=["unknown-depends-on-condition", "interval-without-unit", "misspelt-key"],
    )
    def test_the_schema_check_catches_a_broken_file(self, compose, mutation, where):
        broken = copy.deepcopy(compose)
        mutation(broken)
        errors = list(compose_schema_validator().iter_errors(broken))
        assert errors, f"a broken {where} passed the compose schema"

    def test_every_image_is_pinned_to_an_exact_version(self, services):
        exact = re.compile(r"^[a-z0-9][a-z0-9./_-]*:\d+\.\d+(\.\d+)?(-[A-Za-z0-9.]+)?$")
        for name, service in services.items():
            image = interpolate(service.get("image", ""))
            assert image, f"service {name} names no image"
            assert exact.match(image), f"service {name}: image {image!r} is not pinned to an exact version"
        for base in dockerfile_bases():
            assert exact.match(base), f"{DOCKERFILE.name}: FROM {base!r} is not pinned to an exact version"

    def test_the_project_image_is_built_on_the_tested_airflow_and_python(self, services):
        airflow = pins(REPO / "requirements.txt")["apache-airflow"]
        python = "{}.{}".format(*sys.version_info[:2])
        assert dockerfile_bases() == [f"apache/airflow:{airflow}-python{python}"]
        built = {name: s["image"] for name, s in services.items() if "build" in s}
        assert set(built) == {*AIRFLOW_SERVICES, SIMULATOR}, "every Airflow service and the simulator"
        assert len(set(built.values())) == 1, f"one project image, not {sorted(set(built.values()))}"
        for name, service in services.items():
            if "build" in service:
                build = service["build"]
                assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name

    def test_the_image_installs_the_tested_pins_with_the_lock(self):
        tested = pins(REPO / "requirements.txt")
        image = pins(IMAGE_REQUIREMENTS)
        wrong = {
            name: (version, tested.get(name))
            for name, version in image.items()
            if tested.get(name) != version
        }
        assert not wrong, f"{IMAGE_REQUIREMENTS.name} pins differ from requirements.txt: {wrong}"
        runtime = set(tested) - TEST_ONLY_REQUIREMENTS - {"apache-airflow"}
        assert set(image) == runtime, f"missing from the image: {sorted(runtime - set(image))}"
        dockerfile = DOCKERFILE.read_text()
        assert "-c /tmp/fleet/constraints.txt" in dockerfile
        assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile, "pip must not move Airflow itself"

    def test_the_build_context_sends_what_the_dockerfile_copies(self):
        copy_line = re.search(r"^COPY\s+(.+)\s+\S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
        copied = copy_line.group(1).split()
        ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
        ignore = [line for line in ignore if line and not line.startswith("#")]
        assert ignore[0] == "*", ".dockerignore must start by excluding everything (.venv is huge)"
        assert sorted(line.removeprefix("!") for line in ignore[1:]) == sorted(copied)
        for path in copied:
            assert (REPO / path).is_file(), path


class TestMounts:
    def test_every_mounted_host_path_exists(self, services):
        missing = []
        for name, service in services.items():
            for kind, source, _ in mounts(service):
                path = (REPO / source).resolve()
                documented = path.relative_to(REPO).as_posix() in CREATED_BY_DOCUMENTED_STEP
                if kind == "bind" and not path.exists() and not documented:
                    missing.append(f"{name}: {source}")
        assert not missing, f"bind mounts of paths the repository lacks: {missing}"

    def test_the_directories_compose_needs_are_created_by_the_readme(self):
        readme = (REPO / "README.md").read_text()
        step = re.search(r"^mkdir -p (.+)$", readme, flags=re.MULTILINE)
        assert step, "README.md has no `mkdir -p` step for the compose directories"
        assert set(step.group(1).split()) >= CREATED_BY_DOCUMENTED_STEP

    @pytest.mark.parametrize("name", AIRFLOW_SERVICES)
    def test_dags_and_plugins_are_where_airflow_looks(self, services, name):
        service = services[name]
        assert resolve(service, "/opt/airflow/dags") == ("bind", "./dags", PurePosixPath("."))
        assert resolve(service, "/opt/airflow/plugins") == ("bind", "./plugins", PurePosixPath("."))
        assert resolve(service, "/opt/airflow/logs")[1] == "./logs"

    @pytest.mark.parametrize("name", AIRFLOW_SERVICES)
    def test_instance_agent_is_importable_and_not_a_plugin(self, services, name):
        service = services[name]
        targets = [target for kind, source, target in mounts(service) if source == "./instance_agent"]
        assert len(targets) == 1, f"{name} must mount ./instance_agent once, got {targets}"
        parent = str(PurePosixPath(targets[0]).parent)
        assert PurePosixPath(targets[0]).name == "instance_agent"
        assert parent in environment(service).get("PYTHONPATH", "").split(":"), (
            f"{name}: {parent} (holding instance_agent) is not on PYTHONPATH"
        )
        # The plugin manager imports every .py file under plugins/: the agent must not be there.
        assert PurePosixPath("/opt/airflow/plugins") not in PurePosixPath(targets[0]).parents

    def test_the_triggerer_has_what_the_triggers_import(self, services):
        triggerer = services["airflow-triggerer"]
        assert resolve(triggerer, "/opt/airflow/plugins/operators/fleet_ec2_triggers.py") == (
            "bind",
            "./plugins",
            PurePosixPath("operators/fleet_ec2_triggers.py"),
        )
        assert resolve(triggerer, "/opt/airflow/project/instance_agent/protocol.py")[1] == "./instance_agent"
        assert (REPO / "plugins/operators/fleet_ec2_triggers.py").is_file()

    def test_project_sources_are_read_only_where_nothing_writes_them(self, services):
        for name, service in services.items():
            for entry in service.get("volumes", []):
                if entry.startswith(("./instance_agent:", "./fleet_sim:", "./dags/fleet.yaml:")):
                    assert entry.endswith(":ro"), f"{name}: {entry} should be read-only"


class TestServices:
    @pytest.mark.parametrize(("name", "command"), AIRFLOW_COMPONENTS.items())
    def test_each_airflow_component_runs_with_a_healthcheck(self, services, name, command):
        service = services[name]
        assert service["command"] == command
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
        assert service.get("restart") == "always"

    def test_the_component_healthchecks_probe_their_own_component(self, services):
        probes = {name: " ".join(services[name]["healthcheck"]["test"]) for name in AIRFLOW_COMPONENTS}
        assert "http://localhost:8080/api/v2/monitor/health" in probes["airflow-apiserver"]
        assert "http://localhost:8974/health" in probes["airflow-scheduler"]
        assert "--job-type DagProcessorJob" in probes["airflow-dag-processor"]
        assert "--job-type TriggererJob" in probes["airflow-triggerer"]
        env = environment(services["airflow-scheduler"])
        assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true", "port 8974 is off by default"

    def test_local_executor_and_nothing_celery_needs(self, services):
        for name in AIRFLOW_SERVICES:
            assert environment(services[name])["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert not {"redis", "airflow-worker", "flower"} & set(services)

    def test_every_component_shares_the_database_and_the_jwt_secret(self, services):
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET"):
            values = {environment(services[name])[key] for name in AIRFLOW_SERVICES}
            assert len(values) == 1 and "" not in values, f"{key} differs or is empty: {values}"
        scheduler = environment(services["airflow-scheduler"])
        assert "@postgres/" in scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        url = urlsplit(scheduler["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == "airflow-apiserver" and url.port == 8080 and url.path == "/execution/"

    def test_the_ui_is_published_on_localhost_8080(self, services):
        assert "8080:8080" in services["airflow-apiserver"]["ports"]

    def test_start_order(self, services):
        conditions = {
            name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
            for name, service in services.items()
        }
        init = {"postgres": "service_healthy", "airflow-init": "service_completed_successfully"}
        assert conditions["airflow-init"] == {"postgres": "service_healthy"}
        assert conditions["airflow-apiserver"] == init
        # Tasks run in the scheduler (LocalExecutor) and call the API server's execution API.
        assert conditions["airflow-scheduler"] == {
            **init,
            "airflow-apiserver": "service_healthy",
            SIMULATOR: "service_healthy",
        }
        # Parsing fleet_daily reads FLEET_CONFIG, which the simulator writes; triggers poll it.
        assert conditions["airflow-dag-processor"] == {**init, SIMULATOR: "service_healthy"}
        assert conditions["airflow-triggerer"] == {**init, SIMULATOR: "service_healthy"}
        assert conditions[SIMULATOR] == {}

    def test_every_dependency_exists_and_has_what_its_condition_needs(self, services):
        for name, service in services.items():
            for dependency, spec in service.get("depends_on", {}).items():
                assert dependency in services, f"{name} depends on unknown service {dependency}"
                if spec["condition"] == "service_healthy":
                    assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
                if spec["condition"] == "service_completed_successfully":
                    assert services[dependency].get("restart") in (None, "no"), f"{dependency} restarts"

    def test_init_creates_the_ui_user_and_migrates(self, services):
        env = environment(services["airflow-init"])
        assert env["_AIRFLOW_DB_MIGRATE"] == "true"
        assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
        assert env["_AIRFLOW_WWW_USER_USERNAME"] == "airflow"
        assert env["_AIRFLOW_WWW_USER_PASSWORD"] == "airflow"
        # `airflow users create` (what the entrypoint runs for that) is the FAB auth manager's.
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")


class TestSimulatorWiring:
    @pytest.mark.parametrize("name", AIRFLOW_SERVICES)
    def test_aws_default_reaches_the_simulator_with_fake_credentials(self, services, name):
        from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
        from airflow.sdk import Connection

        raw = environment(services[name])["AIRFLOW_CONN_AWS_DEFAULT"]
        wrapper = AwsConnectionWrapper(Connection.from_json(raw, conn_id="aws_default"))
        endpoint = urlsplit(wrapper.endpoint_url)
        assert endpoint.hostname == SIMULATOR
        assert str(endpoint.port) == option(simulator_argv(services), "--port")
        assert wrapper.region_name == yaml.safe_load((REPO / "dags/fleet.yaml").read_text())["region"]
        assert (wrapper.aws_access_key_id, wrapper.aws_secret_access_key) == ("testing", "testing")

    @pytest.mark.parametrize(("read", "shipped"), [("--fleet", "fleet.yaml"), ("--pool", "pool.yaml")])
    def test_the_simulator_reads_the_shipped_configs(self, services, read, shipped):
        simulator = services[SIMULATOR]
        kind, source, inner = resolve(simulator, option(simulator_argv(services), read))
        assert kind == "bind"
        assert (REPO / source / inner).resolve() == (REPO / "dags" / shipped).resolve()
        assert option(simulator_argv(services), "--host") == "0.0.0.0"

    @pytest.mark.parametrize("name", AIRFLOW_SERVICES)
    @pytest.mark.parametrize(("write", "variable"), WRITTEN_CONFIGS)
    def test_airflow_reads_the_configs_the_simulator_writes(self, services, name, write, variable):
        written = option(simulator_argv(services), write)
        writer = resolve(services[SIMULATOR], written)
        assert writer[0] == "volume", "the rewritten config must be on a named volume both sides share"
        reader = resolve(services[name], environment(services[name])[variable])
        assert reader == writer, f"{name} reads {variable} from {reader}, the simulator writes {writer}"

    def test_the_pools_readiness_check_reaches_the_simulator_as_airflow_does(self, services):
        # The pool config's readiness URL is written from --advertise; Airflow's tasks and API
        # server check it from their containers, where aws_default's endpoint is how they reach it.
        connection = json.loads(environment(services["airflow-scheduler"])["AIRFLOW_CONN_AWS_DEFAULT"])
        assert option(simulator_argv(services), "--advertise") == connection["extra"]["endpoint_url"]

    def test_the_simulator_cli_accepts_the_command(self, services):
        from fleet_sim.cli import build_parser

        argv = simulator_argv(services)
        args = build_parser().parse_args(argv[3:])
        assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 5000)
        assert args.fleet == option(argv, "--fleet")
        assert args.write_config == option(argv, "--write-config")
        assert (args.pool, args.write_pool_config, args.advertise) == tuple(
            option(argv, name) for name in ("--pool", "--write-pool-config", "--advertise")
        )

    def test_the_simulator_can_import_its_package_and_the_agent(self, services):
        simulator = services[SIMULATOR]
        workdir = simulator["working_dir"]
        for package in ("fleet_sim", "instance_agent"):
            kind, source, inner = resolve(simulator, f"{workdir}/{package}")
            assert (kind, source, inner) == ("bind", f"./{package}", PurePosixPath("."))
        assert workdir in environment(simulator)["PYTHONPATH"].split(":")
        # Not an Airflow command: the entrypoint must not wait for a metadata database.
        assert environment(simulator)["CONNECTION_CHECK_MAX_COUNT"] == "0"

    @pytest.mark.parametrize(("write", "variable"), WRITTEN_CONFIGS)
    def test_the_simulator_removes_a_stale_config_before_serving(self, services, write, variable):
        script = services[SIMULATOR]["command"][-1]
        removal = re.search(r"rm -f ([^&]+)&&", script)
        assert removal and script.index(removal.group(0)) < script.index("exec python -m fleet_sim")
        assert option(simulator_argv(services), write) in removal.group(1).split()

    def test_the_simulator_healthcheck_waits_for_the_rewritten_config(self, services, tmp_path):
        """Run the healthcheck's own script, pointed at a temporary file and a local port."""
        test = services[SIMULATOR]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        port = option(simulator_argv(services), "--port")
        configs = [tmp_path / f"{n}.sim.yaml" for n in range(len(WRITTEN_CONFIGS))]
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            free_port = listener.getsockname()[1]
            script = test[3].replace(f", {port})", f", {free_port})")
            for (write, _), config in zip(WRITTEN_CONFIGS, configs, strict=True):
                script = script.replace(option(simulator_argv(services), write), str(config))
            assert all(str(config) in script for config in configs) and str(free_port) in script

            def healthy() -> bool:
                return subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0

            assert not healthy(), "healthy before the simulator wrote its configs"
            for config in configs:
                config.write_text("")
            assert not healthy(), "healthy with empty configs"
            configs[0].write_text("region: us-east-1\n")
            assert not healthy(), "healthy before the pool config is written"
            configs[1].write_text("group: vscode-asg\n")
            assert healthy()
        assert not healthy(), "healthy while nothing listens on the simulator's port"
