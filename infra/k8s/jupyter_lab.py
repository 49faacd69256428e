"""The in-cluster notebook's runtime (`dask.jupyter`): its `jupyter lab` command line, server config, and
the Dask settings that make `Client()` with no arguments reach the stack's scheduler over mutual TLS.

Pure functions only: the pod builder (infra/k8s/jupyter.py) turns them into a ConfigMap, env and a
command, and the real-process tests (tests/notebook/) start the very same lab from them.

Choices, and why:

- **Token.** Jupyter's own token auth. jupyter_server 2.x reads the token from the file named by
  `JUPYTER_TOKEN_FILE` (`IdentityProvider.token`'s default), so the token lives in a Kubernetes
  Secret mounted as a file, never in the JSON config, the pod spec or Pulumi state. The file is read
  as is: it must hold the token without a trailing newline.
- **Culling.** Kernels idle for `idleCullMinutes` are culled even while a browser tab is connected
  (`cull_connected`): a forgotten tab must not keep a kernel, and its `Client`, holding workers. A
  busy kernel (a computation running) is not idle and is kept. Terminals are culled the same way (a
  script started from one can hold a Client too). The server itself exits after the same time with no
  kernel, no terminal and no request (`shutdown_no_activity_timeout`; it checks once a minute); the
  pod's `restartPolicy: Always` starts a fresh one (same token, same home volume). That exit kills
  anything the culling missed (e.g. a background process started from a cell), so an abandoned
  notebook holds no workers; the pod's own requests stay reserved, which is what keeps its place
  on the system pool. An open lab tab polls the API, which counts as activity: the server then
  stays up, and only its idle kernels are culled.
- **Dashboard.** Proxied by jupyter-server-proxy as `/proxy/<scheduler-host>:<dashboard-port>/status`
  (see `dashboard_link`); `ServerProxy.host_allowlist` names the scheduler's host only, so the lab
  proxies to no other host. Two limits of jupyter-server-proxy, both harmless here: the allow-list
  is per host, not per port (which ports of that host the pod reaches is the NetworkPolicy's job:
  scheduler and dashboard only); and `/proxy/<port>` always reaches the pod's own localhost (the
  lab and the user's own processes, nothing beyond the pod).
- **Dask pane.** dask-labextension reads its default dashboard URL from JupyterLab's settings, not
  from dask's config (its dask config only describes the cluster manager's LocalCluster factory).
  The URL is set in an `overrides.json` beside the server config (`LabApp.app_settings_dir`), with
  the check done by the browser (`browserDashboardCheck`): the server-side check fetches the URL
  without the user's credentials, so through the token-protected proxy it would always fail. The
  cluster manager's "New" button (a LocalCluster inside the notebook pod) is hidden: the stack's
  cluster is the one to use.
"""

from __future__ import annotations

import json
import re

from infra.k8s import tls_mount

LAB_PORT = 8888
TOKEN_FILE_NAME = "token"  # the key of the token Secret, and the file name where it is mounted
CONFIG_FILE_NAME = "jupyter_server_config.json"
OVERRIDES_FILE_NAME = "overrides.json"  # JupyterLab's settings overrides (dask-labextension's URL)
HEALTH_PATH = "/api"  # answers 200 without a token: a probe that reveals only the server's version
DASK_PANE_PLUGIN = "dask-labextension:plugin"
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")  # a DNS name or IPv4 address


def lab_command(port: int, config_dir: str, root_dir: str | None = None) -> list[str]:
    """A real `jupyter lab` process: no browser, every interface (the pod IP for probes; users come
    through `kubectl port-forward`), this config file. No `--allow-root` (nor `allow_root` in the
    config): jupyter refuses to run as root, which `restricted` Pod Security forbids anyway."""
    _check_port("port", port)
    command = [
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=0.0.0.0",
        f"--port={port}",
        f"--config={config_dir.rstrip('/')}/{CONFIG_FILE_NAME}",
    ]
    if root_dir:
        command.append(f"--ServerApp.root_dir={root_dir}")
    return command


def lab_env(token_file: str) -> dict[str, str]:
    """The server's environment: the token read from the mounted Secret (see the module docstring)."""
    return {"JUPYTER_TOKEN_FILE": token_file}


def idle_seconds(cull_idle_minutes: float) -> int:
    """`idleCullMinutes` as jupyter's whole seconds; a fraction of a minute serves tests only."""
    if not cull_idle_minutes > 0:
        raise ValueError(f"cull_idle_minutes must be > 0, got {cull_idle_minutes!r}")
    return max(1, round(cull_idle_minutes * 60))


def lab_config(
    *, cull_idle_minutes: float, scheduler_host: str, dashboard_port: int, config_dir: str
) -> dict:
    """The content of jupyter_server_config.json (see the module docstring for each choice)."""
    _check_host(scheduler_host)
    _check_port("dashboard_port", dashboard_port)
    idle = idle_seconds(cull_idle_minutes)
    every = min(60, max(1, idle // 2))  # how often the cullers look; jupyter's default is 300 s
    return {
        "ServerApp": {
            "open_browser": False,
            "shutdown_no_activity_timeout": idle,
        },
        "MappingKernelManager": {
            "cull_idle_timeout": idle,
            "cull_interval": every,
            "cull_connected": True,
            "cull_busy": False,
        },
        "TerminalManager": {"cull_inactive_timeout": idle, "cull_interval": every},
        "ServerProxy": {"host_allowlist": [scheduler_host]},
        "LabApp": {"app_settings_dir": config_dir.rstrip("/")},
    }


def lab_overrides(dashboard_url: str) -> dict:
    """JupyterLab settings overrides: dask-labextension's pane opens on the proxied dashboard; no news
    feed or update check (JupyterLab would ask the user, then fetch them from the internet through the
    server: nothing in the notebook pod calls out unless the user's code does)."""
    return {
        DASK_PANE_PLUGIN: {
            "defaultURL": dashboard_url,
            "browserDashboardCheck": True,
            "hideClusterManager": True,
        },
        NOTIFICATION_PLUGIN: {"fetchNews": "false", "checkForUpdates": False},
    }


def lab_files(
    *, cull_idle_minutes: float, scheduler_host: str, dashboard_port: int, config_dir: str
) -> dict[str, str]:
    """The files of the lab's config folder (a ConfigMap's data, mounted at `config_dir`)."""
    config = lab_config(
        cull_idle_minutes=cull_idle_minutes,
        scheduler_host=scheduler_host,
        dashboard_port=dashboard_port,
        config_dir=config_dir,
    )
    overrides = lab_overrides(dashboard_link(scheduler_host, dashboard_port))
    return {
        CONFIG_FILE_NAME: json.dumps(config, indent=2, sort_keys=True) + "\n",
        OVERRIDES_FILE_NAME: json.dumps(overrides, indent=2, sort_keys=True) + "\n",
    }


def dashboard_link(scheduler_host: str, dashboard_port: int) -> str:
    """The scheduler's status page through the lab: `/proxy/<host>:<port>/status`.

    Not the issue's `/proxy/8787/status`: jupyter-server-proxy sends `/proxy/<port>` to the lab's own
    localhost, where no dashboard listens (the scheduler runs in its own pod); serving it there would
    take a second forwarding process. `/proxy/<host>:<port>` is its documented form for another host,
    honoured only for hosts in `ServerProxy.host_allowlist`. A relative link: it resolves against
    whatever address the browser uses for the lab (`kubectl port-forward`'s localhost:8888 or other).
    """
    _check_host(scheduler_host)
    _check_port("dashboard_port", dashboard_port)
    return f"/proxy/{scheduler_host}:{dashboard_port}/status"


def dask_client_env(*, scheduler_address: str, tls_dir: str | None, dashboard_link: str) -> dict[str, str]:
    """distributed's settings as DASK_* variables, for the lab and its kernels: `Client()` with no
    arguments connects to `scheduler_address` with the client certificate mounted at `tls_dir` (the
    client Secret's files, named as `python -m dask_adaptive client-config` names them on a laptop).

    Unlike the laptop's config, encryption is required here: nothing in the notebook pod has a reason
    to speak plaintext Dask, and a `tcp://` address fails at once instead of being tried. A stack
    without TLS (`dask.tls: false`) passes `tls_dir=None` and a `tcp://` address: no TLS variables."""
    if tls_dir is None:
        if not scheduler_address.startswith("tcp://"):
            raise ValueError(f"without tls_dir, scheduler_address must be tcp://, got {scheduler_address!r}")
        return {
            "DASK_SCHEDULER_ADDRESS": scheduler_address,
            "DASK_DISTRIBUTED__DASHBOARD__LINK": dashboard_link,
        }
    if not scheduler_address.startswith("tls://"):
        raise ValueError(f"scheduler_address must be a tls:// address, got {scheduler_address!r}")
    return {
        "DASK_SCHEDULER_ADDRESS": scheduler_address,
        **tls_mount.tls_variables(tls_dir, ("CLIENT",)),
        "DASK_DISTRIBUTED__DASHBOARD__LINK": dashboard_link,
    }


def _check_host(host: str) -> None:
    if not (isinstance(host, str) and _HOST.fullmatch(host) and len(host) <= 253):
        raise ValueError(f"scheduler_host must be a DNS name or IPv4 address, got {host!r}")


def _check_port(name: str, port: int) -> None:
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        raise ValueError(f"{name} must be a port number 1-65535, got {port!r}")
