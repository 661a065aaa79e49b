"""Typed config: every problem names its key and the expected form; typos suggest the right key."""

from __future__ import annotations

import pytest

from shadowmesh_client.config import load_config, parse_config
from shadowmesh_client.errors import ConfigError

BASE = {"rpc_url": "http://127.0.0.1:8545", "deployments": "deployments/x.json", "network_id": 1}


def test_valid_config_resolves_relative_paths(tmp_path):
    cfg = parse_config({**BASE, "tun": {"name": "sm1", "mtu": 1400}}, base=tmp_path)
    assert cfg.deployments == tmp_path / "deployments/x.json"
    assert cfg.device_key == tmp_path / "device.key" and cfg.tun.mtu == 1400


@pytest.mark.parametrize("patch, expected", [
    ({"rpc_ur": "x"}, "unknown key `rpc_ur` (did you mean `rpc_url`?)"),
    ({"tun": {"mtuu": 1}}, "unknown key `tun.mtuu` (did you mean `tun.mtu`?)"),
    ({"tun": {"mtu": "big"}}, "`tun.mtu`: Input should be a valid integer"),
    ({"tun": {"mtu": 100}}, "`tun.mtu`: Input should be greater than or equal to 576"),
    ({"rpc_url": "localhost:8545"}, "`rpc_url`: expected an http:// or https:// URL"),
    ({"endpoint": "https://x"}, "`endpoint`: endpoint 'https://x' must be a ws:// or wss:// URL"),
    ({"listen": "443"}, "`listen`: expected HOST:PORT"),
    ({"log_level": "LOUD"}, "`log_level`: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ({"network_id": 0}, "`network_id`: Input should be greater than or equal to 1"),
    ({"registry": "0x12"}, "`registry`: expected an address"),
])
def test_bad_values_name_the_key(patch, expected):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch}, "cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ") and expected in str(err.value)


def test_chain_source_required():
    with pytest.raises(ConfigError, match="set `deployments`"):
        parse_config({"network_id": 1})


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rpc_url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)
