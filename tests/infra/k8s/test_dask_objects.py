"""The scheduler's PodDisruptionBudget and its short-lived API token, on every committed stack's graph.

- The budget (k8s/dask_objects.py `scheduler_disruption_budget`) is registered for every target, before
  the scheduler Deployment, and its selector picks the scheduler's pod template and no other pod template
  of the stack (workers, headroom placeholders): a drain waits for the scheduler and never for a worker.
- The scheduler pod mounts no automatic token; a projected volume gives the preload exactly the files it
  reads (token, ca.crt, namespace) at the folder it reads them from, with a 600 s token.

The real control plane proves the rest (tests/kube/test_stack_applied.py `_check_disruption_budget`):
Eviction refused for the scheduler (429), admitted for a worker, and the preload scaling with the
projected token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dask_adaptive.backends.kubernetes.api import KubeApi
from dask_adaptive.config import reference
from infra.k8s import dask_objects as kd
from testbed.infra.harness import Graph, Node, stack_names
from tests.infra.schema import schema_errors

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"


def templates(graph: Graph) -> dict[str, dict]:
    """Every Deployment's pod template of the stack, by its component label."""
    return {
        n.inputs["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: n.inputs["spec"][
            "template"
        ]
        for n in graph.of_type(DEPLOYMENT)
    }


def scheduler(graph: Graph) -> Node:
    (node,) = [
        n
        for n in graph.of_type(DEPLOYMENT)
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    ]
    return node


def selects(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector  # nothing else to evaluate
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_registers_a_budget_that_selects_only_the_scheduler(stack, stack_graph):
    graph = stack_graph(stack)
    budget = graph.one(PDB)
    spec = budget.inputs["spec"]
    assert spec["maxUnavailable"] == 0 and "minAvailable" not in spec
    assert spec["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"
    pods = templates(graph)
    assert {"scheduler", "worker"} <= set(pods)
    chosen = {
        component for component, t in pods.items() if selects(spec["selector"], t["metadata"]["labels"])
    }
    assert chosen == {"scheduler"}, chosen
    # in the scheduler's namespace, and it exists before the scheduler's first pod does
    sched = scheduler(graph)
    assert budget.inputs["metadata"]["namespace"] == sched.inputs["metadata"]["namespace"]
    assert graph.depends_on(sched, budget)
    assert graph.depends_on(budget, graph.one("kubernetes:core/v1:Namespace"))


def test_the_budget_is_valid_for_kubernetes_1_33_and_its_selector_is_the_deployments():
    from testbed.infra.builders import aws_settings, local_settings

    for settings in (aws_settings(), local_settings()):
        names = kd.Names(settings.namespace)
        budget = kd.scheduler_disruption_budget(settings, names)
        assert schema_errors(budget, "1.33") == []
        deployment = kd.scheduler_deployment(settings, names, (), "h")
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_a_budget_selecting_the_workers_would_be_caught():
    """The selector check above can fail: the worker template's labels are not the scheduler's."""
    from testbed.infra.builders import aws_settings

    settings = aws_settings()
    names = kd.Names(settings.namespace)
    worker_budget = {"matchLabels": kd.selector_labels(names, "worker")}
    worker = kd.worker_deployment(settings, names, (), "h")["spec"]["template"]
    sched = kd.scheduler_deployment(settings, names, (), "h")["spec"]["template"]
    assert selects(worker_budget, worker["metadata"]["labels"])
    assert not selects(worker_budget, sched["metadata"]["labels"])


# ---------------------------------------------------------------- the scheduler's token


def token_volume(pod: dict) -> dict:
    (container,) = pod["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == kd.SERVICE_ACCOUNT_PATH]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume


@pytest.mark.parametrize("stack", stack_names())
def test_the_scheduler_mounts_a_600s_projected_token_instead_of_the_automounted_one(stack, stack_graph):
    graph = stack_graph(stack)
    pod = scheduler(graph).inputs["spec"]["template"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    sources = token_volume(pod)["projected"]["sources"]
    tokens = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    # no audience: the apiserver's own, which is what the preload calls
    assert tokens == [{"path": "token", "expirationSeconds": 600}]
    # the scheduler's ServiceAccount mounts nothing by itself either (a pod naming it gets no token)
    account = pod["spec"]["serviceAccountName"]
    (sa,) = [n for n in graph.of_type(SERVICE_ACCOUNT) if n.inputs["metadata"]["name"] == account]
    assert sa.inputs["automountServiceAccountToken"] is False


def test_the_mount_is_where_the_preload_reads_its_service_account():
    assert reference()["adaptive.kubernetes.service-account-dir"].default == kd.SERVICE_ACCOUNT_PATH


def materialise(volume: dict, folder: Path, namespace: str) -> None:
    """What a kubelet writes for the projected volume (token, the CA ConfigMap key, the downward API)."""
    for source in volume["projected"]["sources"]:
        if "serviceAccountToken" in source:
            (folder / source["serviceAccountToken"]["path"]).write_text("a.jwt.token\n")
        for item in source.get("configMap", {}).get("items", []):
            assert source["configMap"]["name"] == "kube-root-ca.crt" and item["key"] == "ca.crt"
            (folder / item["path"]).write_text("-----BEGIN CERTIFICATE-----\n")
        for item in source.get("downwardAPI", {}).get("items", []):
            assert item["fieldRef"]["fieldPath"] == "metadata.namespace"
            (folder / item["path"]).write_text(namespace)


def test_the_projected_folder_is_what_the_preloads_in_cluster_client_reads(tmp_path):
    from testbed.infra.builders import aws_settings

    settings = aws_settings()
    names = kd.Names(settings.namespace)
    pod = kd.scheduler_deployment(settings, names, (), "h")["spec"]["template"]
    materialise(token_volume(pod), tmp_path, names.namespace)
    api, namespace = KubeApi.in_cluster(str(tmp_path), "https://127.0.0.1:6443")
    try:
        assert namespace == names.namespace
        assert api.token.get() == "a.jwt.token"
        assert api.ca_file == str(tmp_path / "ca.crt")  # None if the file were missing
    finally:
        asyncio.run(api.close())
