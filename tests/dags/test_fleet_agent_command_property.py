"""The agent's command survives Airflow's Jinja and the shell for any job text (hypothesis).

The spec rides in a heredoc inside a template that Airflow renders for the run date: whatever a
job's argv or env holds (braces, ``{% endraw %}``, quotes, backticks, ``$``), the agent must read
exactly the spec the config describes.
"""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
from fleet_dag.builder import agent_command, agent_spec, build_dag
from fleet_dag.config import parse_config
from fleet_dag_testing import fleet_dict, parse_agent_command
from fleet_testing import role_named
from hypothesis import given, settings
from hypothesis import strategies as st

from instance_agent.spec import SpecError, check_os_text

DAG_RUN = SimpleNamespace(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"), run_after=None)
# Text rich in what Jinja and the shell treat specially, and anything else printable.
_PIECES = ["{", "}", "%", "#", "-", " ", "'", '"', "`", "$", "\\", "{%", "{{", "{#", "%}", "endraw", "x"]
# Whole tags too: a random walk seldom spells one.
_PIECES += ["{% endraw %}", "{%- endraw -%}", "{% raw %}", "{{ 7*7 }}"]
TRICKY = st.lists(
    st.sampled_from(_PIECES) | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
).map("".join)


def _agent_can_take(text: str) -> bool:
    try:
        check_os_text(text, "argv[0]")
    except SpecError:
        return False
    return True


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(argument=TRICKY.filter(_agent_can_take), value=TRICKY.filter(_agent_can_take))
def test_any_argument_and_env_value_reach_the_agent_byte_for_byte(argument, value):
    data = fleet_dict()
    data["roles"][0]["jobs"][0]["argv"] = ["python", argument]
    data["roles"][0]["jobs"][0]["env"] = {"VALUE": value}
    config = parse_config(data)
    role = role_named(config, "tasks")
    # The DAG's own template environment (its fleet_run_date macro), as Airflow renders the task.
    template = build_dag(config).get_template_env().from_string(agent_command(config, role))
    script = template.render(params={"force": False}, dag_run=DAG_RUN)

    spec = parse_agent_command(script)["spec"]
    assert spec == agent_spec(config, role)
    assert spec["jobs"][0]["argv"][1] == argument and spec["jobs"][0]["env"]["VALUE"] == value
