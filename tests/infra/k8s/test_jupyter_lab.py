"""The notebook runtime's pure parts (infra/k8s/jupyter_lab.py), checked against what the installed
jupyter_server, jupyter-server-proxy, JupyterLab, dask-labextension and distributed actually read.
The running lab is tested in tests/notebook/test_lab_process.py."""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path

import dask
import pytest
from distributed import Security
from traitlets import HasTraits

from infra.k8s import jupyter_lab

HOST = "dask-scheduler.dask.svc.cluster.local"
TRAIT_OWNERS = {  # the classes whose options the config sets, by the section name jupyter looks them up by
    "ServerApp": "jupyter_server.serverapp:ServerApp",
    "MappingKernelManager": "jupyter_server.services.kernels.kernelmanager:MappingKernelManager",
    "TerminalManager": "jupyter_server_terminals.terminalmanager:TerminalManager",
    "ServerProxy": "jupyter_server_proxy.config:ServerProxy",
    "LabApp": "jupyterlab.labapp:LabApp",
}


def files(minutes: float = 30) -> dict[str, dict]:
    out = jupyter_lab.lab_files(
        cull_idle_minutes=minutes, scheduler_host=HOST, dashboard_port=8787, config_dir="/etc/jupyter/"
    )
    return {name: json.loads(text) for name, text in out.items()}


def test_every_option_in_the_config_is_a_configurable_trait_of_its_class():
    config = files()[jupyter_lab.CONFIG_FILE_NAME]
    assert set(config) == set(TRAIT_OWNERS)
    for section, options in config.items():
        module, name = TRAIT_OWNERS[section].split(":")
        owner = getattr(import_module(module), name)
        traits = owner.class_traits(config=True)
        assert set(options) <= set(traits), f"{section}: {set(options) - set(traits)} are not its options"
        for option, value in options.items():  # the type jupyter expects (whole seconds, a list...)
            assert traits[option].validate(HasTraits(), value) == value, f"{section}.{option}"


def test_idle_minutes_become_whole_seconds_for_kernels_terminals_and_the_server():
    config = files(30)[jupyter_lab.CONFIG_FILE_NAME]
    assert config["MappingKernelManager"] == {
        "cull_idle_timeout": 1800,
        "cull_interval": 60,
        "cull_connected": True,  # a forgotten open tab does not keep a kernel and its Client alive
        "cull_busy": False,  # a running computation is not idle
    }
    assert config["TerminalManager"] == {"cull_inactive_timeout": 1800, "cull_interval": 60}
    assert config["ServerApp"]["shutdown_no_activity_timeout"] == 1800
    assert "allow_root" not in config["ServerApp"], "jupyter's default: refuse to run as root"
    fast = files(0.1)[jupyter_lab.CONFIG_FILE_NAME]["MappingKernelManager"]
    assert (fast["cull_idle_timeout"], fast["cull_interval"]) == (6, 3)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="cull_idle_minutes must be > 0"):
            jupyter_lab.idle_seconds(bad)


def test_the_proxy_reaches_only_the_scheduler_host_and_the_pane_opens_on_it():
    both = files()
    config, overrides = both[jupyter_lab.CONFIG_FILE_NAME], both[jupyter_lab.OVERRIDES_FILE_NAME]
    assert config["ServerProxy"] == {"host_allowlist": [HOST]}
    assert config["LabApp"] == {"app_settings_dir": "/etc/jupyter"}, "overrides.json is read from there"
    link = jupyter_lab.dashboard_link(HOST, 8787)
    assert link == f"/proxy/{HOST}:8787/status"
    pane = overrides[jupyter_lab.DASK_PANE_PLUGIN]
    assert pane["defaultURL"] == link
    assert overrides[jupyter_lab.NOTIFICATION_PLUGIN] == {"fetchNews": "false", "checkForUpdates": False}


@pytest.mark.parametrize("plugin", [jupyter_lab.DASK_PANE_PLUGIN, jupyter_lab.NOTIFICATION_PLUGIN])
def test_every_override_is_a_setting_of_its_plugin_with_the_right_type(plugin: str):
    package, name = plugin.split(":")
    schema = json.loads(schema_file(package, name).read_text())["properties"]
    for key, value in files()[jupyter_lab.OVERRIDES_FILE_NAME][plugin].items():
        assert key in schema, f"{plugin} has no setting {key}"
        assert type(value).__name__ == {"string": "str", "boolean": "bool"}[schema[key]["type"]]
        allowed = [choice["const"] for choice in schema[key].get("oneOf", [])]
        assert not allowed or value in allowed, (key, value, allowed)


def schema_file(package: str, name: str) -> Path:
    """Where JupyterLab finds a plugin's settings schema: its own, or an extension's."""
    share = Path(sys.prefix) / "share" / "jupyter"
    for folder in (share / "lab" / "schemas", share / "labextensions" / package / "schemas"):
        if (folder / package / f"{name}.json").is_file():
            return folder / package / f"{name}.json"
    raise AssertionError(f"no settings schema for {package}:{name}")


def test_the_command_is_a_real_jupyter_lab_on_every_interface_with_the_config_file():
    assert jupyter_lab.lab_command(8888, "/etc/jupyter/", "/home/notebook") == [
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=0.0.0.0",
        "--port=8888",
        "--config=/etc/jupyter/jupyter_server_config.json",
        "--ServerApp.root_dir=/home/notebook",
    ]
    assert not any("allow-root" in a for a in jupyter_lab.lab_command(8888, "/c"))
    assert jupyter_lab.lab_env("/var/run/jupyter-token/token") == {
        "JUPYTER_TOKEN_FILE": "/var/run/jupyter-token/token"
    }


def flat(nested: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_client_env_is_what_distributed_reads_for_a_client_with_no_arguments():
    env = jupyter_lab.dask_client_env(
        scheduler_address=f"tls://{HOST}:8786", tls_dir="/etc/dask-tls/", dashboard_link="/proxy/x:1/status"
    )
    with dask.config.set(flat(dask.config.collect_env(env))):  # as dask reads DASK_* at import
        assert dask.config.get("scheduler-address") == f"tls://{HOST}:8786"
        assert dask.config.get("distributed.dashboard.link") == "/proxy/x:1/status"
        security = Security()
        assert security.require_encryption is True
        assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == (
            "/etc/dask-tls/ca.crt",
            "/etc/dask-tls/tls.crt",
            "/etc/dask-tls/tls.key",
        )
        assert security.tls_scheduler_cert is None and security.tls_worker_cert is None, "client role only"


def test_a_plaintext_stack_gets_no_tls_settings_and_mismatches_are_refused():
    plain = jupyter_lab.dask_client_env(scheduler_address="tcp://s:8786", tls_dir=None, dashboard_link="/l")
    assert plain == {"DASK_SCHEDULER_ADDRESS": "tcp://s:8786", "DASK_DISTRIBUTED__DASHBOARD__LINK": "/l"}
    with pytest.raises(ValueError, match="must be a tls:// address"):
        jupyter_lab.dask_client_env(scheduler_address="tcp://s:8786", tls_dir="/t", dashboard_link="/l")
    with pytest.raises(ValueError, match="must be tcp://"):
        jupyter_lab.dask_client_env(scheduler_address="tls://s:8786", tls_dir=None, dashboard_link="/l")


@pytest.mark.parametrize(
    ("host", "port", "match"),
    [
        ("a/b", 8787, "scheduler_host must be a DNS name"),
        ("user@h", 8787, "scheduler_host"),
        ("h:1", 8787, "scheduler_host"),
        ("", 8787, "scheduler_host"),
        ("h", 0, "dashboard_port must be a port number 1-65535, got 0"),
        ("h", 70000, "dashboard_port"),
        ("h", True, "dashboard_port"),
    ],
)
def test_bad_hosts_and_ports_are_refused_with_the_name(host: str, port: int, match: str):
    with pytest.raises(ValueError, match=match):
        jupyter_lab.dashboard_link(host, port)
    with pytest.raises(ValueError, match="port must be a port number"):
        jupyter_lab.lab_command(0, "/c")
