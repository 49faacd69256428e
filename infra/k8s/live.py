"""What the program reads from the user's cluster (local target) before it registers anything.

The local target deploys into a cluster that already exists, through the user's kubeconfig, so a fact of
that cluster can stop `pulumi preview`/`up` with one `ConfigError` naming the key: today, whether the
Prometheus Operator's PodMonitor CRD is installed when `dask.monitoring.podMonitor` asks for one (without
it the apply fails half-way, after the namespace and the pods). `crd_exists` is the only I/O; the aws
target creates its cluster in the same run, so there the operator is a documented prerequisite instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pulumi

from infra.config.reader import key
from infra.config.settings import Settings
from infra.errors import ConfigError
from infra.k8s.monitoring import POD_MONITOR_CRD

# (kubeconfig context or None for the current one, CRD name) -> exists; raises PermissionError when the
# user may not read CRDs, ConnectionError when the cluster cannot be asked.
CrdReader = Callable[[str | None, str], bool]


def crd_exists(context: str | None, name: str) -> bool:
    """GET the CustomResourceDefinition `name` through the kubeconfig (exec auth plugins included)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    # $KUBECONFIG as it is now (the client reads it once, at import), else ~/.kube/config, as Pulumi does
    files = os.environ.get("KUBECONFIG") or config.KUBE_CONFIG_DEFAULT_LOCATION
    try:
        api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=files, context=context))
        api.read_custom_resource_definition(name, _request_timeout=10)
    except ApiException as e:
        if e.status == 404:
            return False
        if e.status in (401, 403):
            raise PermissionError(f"the API server answered {e.status} {e.reason}") from None
        raise ConnectionError(f"the API server answered {e.status} {e.reason}") from None
    except Exception as e:  # no kubeconfig, no such context, unreachable server
        raise ConnectionError(f"{type(e).__name__}: {e}") from None
    return True


def check_local_cluster(settings: Settings, read: CrdReader | None = None) -> None:
    """Refuse a PodMonitor the user's cluster has no CRD for; only warn when it cannot be checked for lack
    of rights (reading CRDs is cluster-scoped: a namespace admin may deploy without it)."""
    if settings.target != "local" or not settings.dask.monitoring.pod_monitor:
        return
    read = read or crd_exists
    field = key("dask.monitoring.podMonitor")
    where = f"the cluster of kubeconfig context {settings.kube_context or '(current)'}"
    try:
        found = read(settings.kube_context, POD_MONITOR_CRD)
    except PermissionError as e:
        pulumi.log.warn(
            f"{field}: cannot check {where} for the CRD {POD_MONITOR_CRD} ({e}); assuming it exists"
        )
        return
    except ConnectionError as e:
        raise ConfigError(field, True, f"cannot check {where} for the CRD {POD_MONITOR_CRD}: {e}") from None
    if not found:
        raise ConfigError(
            field,
            True,
            f"{where} has no CRD {POD_MONITOR_CRD}: install the Prometheus Operator (or its CRDs) first, "
            "or set it false",
        )
