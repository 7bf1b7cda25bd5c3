from __future__ import annotations

from datetime import timedelta

import pytest
from operators.pool_config import PoolConfigError, load_pool_config, parse_pool_config


def test_the_shipped_config_is_valid():
    config = load_pool_config()
    assert config.group == "vscode-asg" and config.buffer == 5


def test_defaults_are_the_references():
    config = parse_pool_config({})
    assert (config.group, config.buffer, config.readiness.url) == (
        "vscode-asg",
        5,
        "http://{private_ip}:8080/healthz",
    )
    assert config.max_idle_age == timedelta(hours=24)


@pytest.mark.parametrize(
    ("data", "field", "shown"),
    [
        ({"buffer": -1}, "buffer", "-1"),
        ({"bufer": 5}, "bufer", "5"),
        ({"group": "has space"}, "group", "'has space'"),
        ({"max_idle_age": "soon"}, "max_idle_age", "'soon'"),
        ({"readiness": {"url": "ftp://x/healthz"}}, "readiness", "ftp://x/healthz"),
        ({"readiness": {"url": "http://{host}:8080/"}}, "readiness", "{host}"),
        ({"readiness": {"url": "tcp://{private_ip}"}}, "readiness", "tcp://{private_ip}"),
        ({"max_idle": 2}, "max_idle", "(2) is below buffer (5)"),
        ({"min_size": 30}, "min_size", "(30) is above max_size (20)"),
    ],
)
def test_errors_name_the_field_and_value(data, field, shown):
    with pytest.raises(PoolConfigError) as error:
        parse_pool_config(data, "pool.yaml")
    text = str(error.value)
    assert text.startswith("pool.yaml: invalid pool config")
    assert field in text and shown in text


def test_unreadable_and_bad_yaml(tmp_path):
    with pytest.raises(PoolConfigError, match="cannot read the pool config"):
        load_pool_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("buffer: [\n")
    with pytest.raises(PoolConfigError, match="not valid YAML"):
        load_pool_config(bad)
