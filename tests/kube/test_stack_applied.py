"""The Dask layer applied for real: every Kubernetes object the Pulumi program registers for a stack is
created on the 1.20 control plane; the scheduler pod comes up with the preload from the ConfigMap; the
scheduler's ServiceAccount can do exactly what the preload needs and nothing more."""

from __future__ import annotations

import contextlib
import json

import pytest

from testbed.dask.kube_driver import client_security
from testbed.infra.harness import stack_names
from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready
from testbed.kube.rest import ApiError
from testbed.kube.stack_apply import (
    SCHEDULER,
    WORKER,
    StackObjects,
    apply,
    nodes_for,
    record_stack,
    selected_pods,
)

pytestmark = pytest.mark.kube

_RECORDED: dict[str, StackObjects] = {}


def objects_of(stack: str) -> StackObjects:
    if stack not in _RECORDED:
        _RECORDED[stack] = record_stack(stack)
    return _RECORDED[stack]


def status(call) -> int:
    """HTTP status of an API call (2xx → 200)."""
    try:
        call()
    except ApiError as exc:
        return exc.status
    return 200


def deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]},
            },
        },
    }


@pytest.mark.parametrize("stack", stack_names())
def test_stack_objects_apply_and_the_scheduler_runs_with_least_privilege(
    kube, namespace, kubelet_factory, stack, record_property
):
    objs = objects_of(stack)
    for what, why in objs.skipped + objs.converted:
        record_property(f"not applied as is: {what}", why)  # the reason is part of the test report
    ns = objs.namespace
    admin = kube.rest()
    if admin.get_or_none(f"/api/v1/namespaces/{ns}"):  # a previous run in this session
        kube.delete_namespace(ns)
        wait_for(lambda: admin.get_or_none(f"/api/v1/namespaces/{ns}") is None, 60, message=f"{ns} gone")
    k = kubelet_factory(nodes_for(objs), namespaces=[ns], probe_period_scale=0.2)
    try:
        apply(admin, objs.objects, objs.patches)
        _check(kube, k, objs, ns, other_ns=namespace)
    finally:
        kube.delete_namespace(ns)


def _check(kube, k, objs: StackObjects, ns: str, other_ns: str) -> None:
    admin = kube.rest()
    labels = objs.find("Deployment", SCHEDULER)["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in labels.items())

    def scheduler_pod():
        pods = admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
        return pods[0] if len(pods) == 1 and pod_ready(pods[0]) else None

    def scheduler_log() -> str:
        pods = admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
        return "\n".join(k.log_text(ns, p["metadata"]["name"])[-3000:] for p in pods if k.all_runners())

    pod = wait_for(scheduler_pod, 120, message=lambda: f"the scheduler pod Ready; log:\n{scheduler_log()}")
    pod_name = pod["metadata"]["name"]
    runner = k.runner(ns, pod_name)

    # 1. The preload running in the scheduler is the one shipped in the ConfigMap (not the venv's copy).
    from distributed import Client

    address = k.service_address(ns, SCHEDULER, 8786)
    # Mutual TLS on the program's own pods: plaintext is refused, the stack's client certificate works.
    with pytest.raises(OSError):  # distributed's CommClosedError / connect timeout
        Client(f"tcp://{address}", timeout=5)
    with Client(f"tls://{address}", security=client_security(kube, ns), timeout=30) as client:

        def preload_origin():
            import sys

            mod = sys.modules.get("dask_adaptive.preload")
            return getattr(mod, "__file__", None)

        origin = client.run_on_scheduler(preload_origin)
    assert origin is not None, "dask_adaptive.preload is not loaded in the scheduler"
    assert origin.startswith(str(runner.dir / "volumes")), origin

    # 2. The worker Deployment exists at 0 replicas (the autoscaler owns replicas; nothing runs yet).
    worker = admin.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKER}")
    assert worker["spec"]["replicas"] == 0
    worker_selector = ",".join(f"{a}={b}" for a, b in worker["spec"]["selector"]["matchLabels"].items())
    assert admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=worker_selector) == []

    # 3. Least privilege, both directions, with the ServiceAccount the program created: the legacy
    #    token the controller-manager issued, and the token the scheduler pod itself uses.
    admin.post(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment("other"))
    admin.post(f"/apis/apps/v1/namespaces/{other_ns}/deployments", deployment(WORKER))
    secret_name = admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{SCHEDULER}")["secrets"][0]["name"]
    tokens = {
        "legacy Secret token": kube.service_account_token(ns, SCHEDULER, legacy=True),
        "pod token": (runner.sa_dir / "token").read_text(),
    }
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "rbac-check-"},
        "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": ns},
        "reason": "RBACCheck",
        "message": "tests/kube: the scheduler may record events",
        "type": "Normal",
    }
    for label, token in tokens.items():
        can, cannot = rbac_matrix(kube.rest(token=token), ns, other_ns, pod_name, event, secret_name)
        assert can == dict.fromkeys(can, 200), f"{label}: {json.dumps(can)}"
        assert cannot == dict.fromkeys(cannot, 403), f"{label}: {json.dumps(cannot)}"
    # 4. The scheduler's own token scales the program's worker Deployment; the worker pod (worker
    #    preload from the ConfigMap, Service DNS to the scheduler) becomes Ready and joins as its pod.
    kube.rest(token=tokens["pod token"]).patch(
        f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKER}/scale", {"spec": {"replicas": 1}}
    )

    def worker_ready():
        pods = admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=worker_selector)
        return pods[0]["metadata"]["name"] if len(pods) == 1 and pod_ready(pods[0]) else None

    worker_pod = wait_for(
        worker_ready, 120, message=lambda: f"a Ready worker pod; kubelet: {k.log_tails(30)}"
    )
    with Client(f"tls://{address}", security=client_security(kube, ns), timeout=30) as client:
        wait_for(
            lambda: worker_pod in {w["name"] for w in client.scheduler_info()["workers"].values()},
            60,
            message=f"worker {worker_pod} registered",
        )
    # The dry-run delete left the scheduler alone.
    assert admin.get(f"/api/v1/namespaces/{ns}/pods/{pod_name}")["metadata"].get("deletionTimestamp") is None
    with contextlib.suppress(ApiError):
        admin.delete(f"/apis/apps/v1/namespaces/{other_ns}/deployments/{WORKER}")
    _check_fences(admin, objs, ns, scheduler=pod_name, worker=worker_pod)
    _check_disruption_budget(admin, objs, ns, scheduler=pod_name, worker=worker_pod)


def _evict(admin, ns: str, pod: str) -> int:
    """The Eviction API, as `kubectl drain`, cluster-autoscaler and a managed node-group update call it."""
    body = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
    return status(lambda: admin.post(f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", body))


def _check_disruption_budget(admin, objs: StackObjects, ns: str, scheduler: str, worker: str) -> None:
    """6. The program's PodDisruptionBudget (issue 20 A2), as the disruption controller computes it: a drain
    is refused the running scheduler (429: the drain waits, a node-group update fails loudly) and may
    evict a worker (it retires on SIGTERM)."""
    (pdb,) = objs.of_kind("PodDisruptionBudget")
    path = f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/{pdb['metadata']['name']}"

    def computed():
        live = admin.get(path)
        st = live.get("status") or {}
        done = st.get("observedGeneration") == live["metadata"]["generation"] and st.get("expectedPods") == 1
        return st if done and st.get("currentHealthy") == 1 else None

    st = wait_for(computed, 60, message="the disruption controller computed the scheduler's budget")
    assert st["disruptionsAllowed"] == 0 and st["desiredHealthy"] == 1
    assert _evict(admin, ns, scheduler) == 429
    assert admin.get(f"/api/v1/namespaces/{ns}/pods/{scheduler}")["metadata"].get("deletionTimestamp") is None
    assert _evict(admin, ns, worker) == 200
    deleting = admin.get_or_none(f"/api/v1/namespaces/{ns}/pods/{worker}")
    assert deleting is None or deleting["metadata"].get("deletionTimestamp") is not None


def _check_fences(admin, objs: StackObjects, ns: str, scheduler: str, worker: str) -> None:
    """5. The namespace's fences as the API server holds them (it stores but does not enforce policies):
    every NetworkPolicy selector picks exactly the intended pods of the stack and not a stranger's."""
    stranger = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stranger", "labels": {"app": "stranger"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "10m", "memory": "16Mi"},
                    },
                }
            ],
            "nodeSelector": {"nowhere": "true"},  # stays Pending: it only has to exist to be selected
        },
    }
    admin.post(f"/api/v1/namespaces/{ns}/pods", stranger)
    policies = {
        p["metadata"]["name"]: p["spec"]
        for p in admin.items(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies")
    }
    assert set(policies) == {p["metadata"]["name"] for p in objs.of_kind("NetworkPolicy")}
    everyone, dask = {scheduler, worker, "stranger"}, {scheduler, worker}
    expected = {  # policy -> (pods it governs, pods each `from` peer selects)
        "dask-default-deny": (everyone, []),
        "dask-scheduler-from-workers": ({scheduler}, [{worker}]),
        "dask-workers-from-dask": ({worker}, [dask]),
    }
    for name, (governed, peers) in expected.items():
        spec = policies[name]
        assert selected_pods(admin, ns, spec["podSelector"]) == governed, name
        froms = [f for rule in spec.get("ingress") or [] for f in rule["from"]]
        assert [selected_pods(admin, ns, f["podSelector"]) for f in froms] == peers, name
    # Egress, as the API server stores it: the default deny covers both directions; the scheduler may open
    # only its workers among the pods (the rest are DNS and API-server addresses), workers the scheduler and
    # each other.
    assert policies["dask-default-deny"]["policyTypes"] == ["Ingress", "Egress"]
    egress_expected = {
        "dask-scheduler-egress": ({scheduler}, [{worker}]),
        "dask-workers-egress": ({worker}, [{scheduler}, {worker}]),
    }
    for name, (governed, peers) in egress_expected.items():
        spec = policies[name]
        assert selected_pods(admin, ns, spec["podSelector"]) == governed, name
        tos = [t for rule in spec["egress"] for t in rule["to"] if set(t) == {"podSelector"}]
        assert [selected_pods(admin, ns, t["podSelector"]) for t in tos] == peers, name
    # The default ServiceAccount mounts no token; the quota is computed and counts the stack's pods.
    assert (
        admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")["automountServiceAccountToken"] is False
    )
    (quota,) = objs.of_kind("ResourceQuota")
    live = admin.get(f"/api/v1/namespaces/{ns}/resourcequotas/{quota['metadata']['name']}")
    assert live["status"]["hard"]["pods"] == quota["spec"]["hard"]["pods"]
    assert int(live["status"]["used"]["pods"]) == 3  # scheduler, worker, stranger
    # The scheduler pod got its PriorityClass's priority (the Priority admission plugin resolved it).
    (priority,) = objs.of_kind("PriorityClass")
    assert admin.get(f"/api/v1/namespaces/{ns}/pods/{scheduler}")["spec"]["priority"] == priority["value"]


def rbac_matrix(
    sa, ns: str, other_ns: str, pod_name: str, event: dict, secret_name: str
) -> tuple[dict, dict]:
    """What the scheduler's token must be allowed (→ 200) and refused (→ 403)."""
    apps, core = f"/apis/apps/v1/namespaces/{ns}", f"/api/v1/namespaces/{ns}"
    scale = f"{apps}/deployments/{WORKER}/scale"
    pod = f"{core}/pods/{pod_name}"
    mark = {"metadata": {"annotations": {"tests.kube/rbac-check": "yes"}}}
    can = {
        "get worker /scale": status(lambda: sa.get(scale)),
        "patch worker /scale": status(lambda: sa.patch(scale, {"spec": {"replicas": 0}})),
        "get worker Deployment": status(lambda: sa.get(f"{apps}/deployments/{WORKER}")),
        "list pods": status(lambda: sa.items(f"{core}/pods")),
        "patch pod": status(lambda: sa.patch(pod, mark)),
        "delete pod (dry run)": status(lambda: sa.request("DELETE", pod, params={"dryRun": "All"})),
        "create Event": status(lambda: sa.post(f"{core}/events", event)),
    }
    secret = f"{core}/secrets/{secret_name}"
    cannot = {
        "get other /scale": status(lambda: sa.get(f"{apps}/deployments/other/scale")),
        "patch other /scale": status(
            lambda: sa.patch(f"{apps}/deployments/other/scale", {"spec": {"replicas": 1}})
        ),
        "patch worker Deployment itself": status(
            lambda: sa.patch(f"{apps}/deployments/{WORKER}", {"spec": {"paused": True}})
        ),
        "scale same-named Deployment in another namespace": status(
            lambda: sa.patch(
                f"/apis/apps/v1/namespaces/{other_ns}/deployments/{WORKER}/scale", {"spec": {"replicas": 1}}
            )
        ),
        "list pods in another namespace": status(lambda: sa.items(f"/api/v1/namespaces/{other_ns}/pods")),
        "list Secrets": status(lambda: sa.items(f"{core}/secrets")),
        "get its own token Secret": status(lambda: sa.get(secret)),
        "read ConfigMaps": status(lambda: sa.items(f"{core}/configmaps")),
        "create pods": status(
            lambda: sa.post(
                f"{core}/pods",
                {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            )
        ),
    }
    return can, cannot
