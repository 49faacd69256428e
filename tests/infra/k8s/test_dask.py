"""DaskCluster under Pulumi mocks: the registered graph, its options, and the pod contract."""

from __future__ import annotations

import hashlib
import json

import pulumi
import pulumi_kubernetes as k8s
import pytest

from infra.config.settings import DaskSettings
from infra.errors import ConfigError
from infra.facts.placement import Taint
from infra.k8s.dask import DaskCluster
from testbed.infra import builders
from testbed.infra.harness import Graph, install, resolve, run_graph
from tests.infra.preload_files import PACKAGE, on_disk
from tests.infra.schema import schema_errors

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
COMPONENT = "adaptive-dask:kubernetes:DaskCluster"


def cluster():
    return builders.aws(
        (
            builders.group("spot", ("m6i.xlarge",), "SPOT", 8, 50),
            builders.group(
                "ondemand", ("m6i.xlarge",), "ON_DEMAND", 2, 50, (Taint("dedicated", "dask", "NoSchedule"),)
            ),
        ),
        version="1.34",
    )


def run(settings: DaskSettings, preview: bool = False) -> tuple[Graph, dict]:
    mocks, monitor = install(stack="test", preview=preview)
    box: dict = {}

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        box["cluster"] = DaskCluster("dask", settings, provider)

    graph = run_graph(program, mocks, monitor)
    return graph, box


def aws(obj: dict | None = None) -> DaskSettings:
    return builders.dask(json.dumps(obj or {}), target="aws", cluster=cluster(), namespace="adask-test")


def local(obj: dict | None = None) -> DaskSettings:
    return builders.dask(json.dumps(obj or {}), target="local", namespace="adask-local")


@pytest.fixture(scope="module")
def graph_aws() -> Graph:
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        graph, _ = run(aws({"dashboardAllowedCidrs": ["10.20.0.0/16"]}))
        return graph
    finally:
        pulumi.runtime.set_all_config({})
        pulumi.runtime.reset_options()
        asyncio.set_event_loop(None)
        loop.close()


def kube(graph: Graph) -> list:
    return [n for n in graph.nodes if n.type.startswith("kubernetes:") and n.custom]


def deployment(graph: Graph, component: str) -> dict:
    [node] = [
        n
        for n in graph.of_type(DEPLOYMENT)
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return node


def pod(graph: Graph, component: str) -> dict:
    return deployment(graph, component).inputs["spec"]["template"]


# ---------------------------------------------------------------- graph shape and options


def test_every_kubernetes_object_uses_the_explicit_provider_and_the_component_as_parent(graph_aws):
    [provider] = graph_aws.of_type("pulumi:providers:kubernetes")
    [component] = graph_aws.of_type(COMPONENT)
    objects = kube(graph_aws)
    # ns, default-SA patch, 2 SAs, Role, RoleBinding, ConfigMap, 2 Deployments, 2 Services (with the
    # dashboard), 6 NetworkPolicies (deny in and out, scheduler<-workers, workers<-dask, dashboard, scheduler
    # egress, worker egress), ResourceQuota, PriorityClass, 2 admission policies + bindings (the scheduler's
    # requests; its PriorityClass), the scheduler's PodDisruptionBudget, 2 TLS Secrets + the client Role (no
    # groups: no binding)
    assert len(objects) == 27
    kinds = sorted(n.type.rsplit(":", 1)[1] for n in objects)
    assert kinds.count("NetworkPolicy") == 6 and kinds.count("ServiceAccountPatch") == 1
    assert kinds.count("ValidatingAdmissionPolicy") == 2 and kinds.count("PodDisruptionBudget") == 1
    assert kinds.count("Secret") == 2 and kinds.count("Role") == 2 and kinds.count("RoleBinding") == 1
    for node in objects:
        assert node.provider_urn == provider.urn, node.name
        assert node.parent == component.urn, node.name
    # the certificates come from an explicit pulumi-tls provider of the component, never a default one
    [tls_provider] = graph_aws.of_type("pulumi:providers:tls")
    assert tls_provider.parent == component.urn
    certs = [n for n in graph_aws.nodes if n.type.startswith("tls:")]
    assert len(certs) == 8  # CA key + cert; per leaf: key, CSR, signed cert
    assert all(n.provider_urn == tls_provider.urn and n.parent == component.urn for n in certs)


CLUSTER_SCOPED = ("PriorityClass", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_every_namespaced_object_waits_for_the_namespace(graph_aws):
    ns = graph_aws.one("kubernetes:core/v1:Namespace")
    for node in kube(graph_aws):
        if node is not ns and not node.type.endswith(CLUSTER_SCOPED):
            assert node.inputs["metadata"]["namespace"] == "adask-test"
            assert graph_aws.depends_on(node, ns), node.name


def test_no_pod_runs_before_its_fences(graph_aws):
    """NetworkPolicies and the quota exist before any pod; the scheduler, which holds the scaling token,
    starts only once its admission policy is bound and its PriorityClass exists."""
    scheduler, workers = deployment(graph_aws, "scheduler"), deployment(graph_aws, "worker")
    fences = [
        *graph_aws.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy"),
        graph_aws.one("kubernetes:core/v1:ResourceQuota"),
    ]
    for fence in fences:
        assert graph_aws.depends_on(workers, fence) and graph_aws.depends_on(scheduler, fence), fence.name
    for fence in (
        *graph_aws.of_type("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"),
        graph_aws.one("kubernetes:scheduling.k8s.io/v1:PriorityClass"),
        graph_aws.one("kubernetes:policy/v1:PodDisruptionBudget"),
    ):
        assert graph_aws.depends_on(scheduler, fence), fence.name
    template = scheduler.inputs["spec"]["template"]["spec"]
    assert (
        template["priorityClassName"]
        == graph_aws.one("kubernetes:scheduling.k8s.io/v1:PriorityClass").inputs["metadata"]["name"]
    )
    ns = graph_aws.one("kubernetes:core/v1:Namespace")
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"] == "v1.34"
    default_sa = graph_aws.one("kubernetes:core/v1:ServiceAccountPatch")
    assert default_sa.inputs["metadata"]["name"] == "default"
    assert default_sa.inputs["automountServiceAccountToken"] is False


def test_the_local_target_can_leave_out_the_admission_policy_for_old_clusters():
    graph, _ = run(local({"admissionPolicy": False}))
    assert not [n for n in kube(graph) if "ValidatingAdmissionPolicy" in n.type]
    assert graph.one("kubernetes:core/v1:ResourceQuota")  # the other fences stay
    with pytest.raises(ConfigError) as err:
        aws({"admissionPolicy": False})
    assert err.value.key == "adaptive-dask:dask.admissionPolicy"


def test_client_selectors_become_the_only_other_way_to_the_scheduler_port():
    settings = aws(
        {"allowedClientNamespaces": [{"team": "analysts"}], "allowedClientPods": [{"role": "notebook"}]}
    )
    graph, _ = run(settings)
    (clients,) = [
        n
        for n in graph.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if n.inputs["metadata"]["name"] == "dask-scheduler-from-clients"
    ]
    peers = clients.inputs["spec"]["ingress"][0]["from"]
    assert peers == [
        {"namespaceSelector": {"matchLabels": {"team": "analysts"}}},
        {"podSelector": {"matchLabels": {"role": "notebook"}}},
    ]
    for bad in ([{}], [{"Bad Key!": "x"}], "team=analysts"):
        with pytest.raises(ConfigError) as err:
            aws({"allowedClientNamespaces": bad})
        assert err.value.key.startswith("adaptive-dask:dask.allowedClientNamespaces")


def test_scheduler_starts_only_after_what_its_preload_checks_at_start(graph_aws):
    scheduler, workers = deployment(graph_aws, "scheduler"), deployment(graph_aws, "worker")
    assert graph_aws.depends_on(scheduler, workers)
    assert graph_aws.depends_on(
        scheduler, graph_aws.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    )
    assert graph_aws.depends_on(scheduler, graph_aws.one("kubernetes:core/v1:ConfigMap"))


def test_worker_replicas_start_at_zero_and_are_never_managed_by_pulumi(graph_aws):
    workers, scheduler = deployment(graph_aws, "worker"), deployment(graph_aws, "scheduler")
    # set explicitly: an omitted `replicas` defaults to 1 in Kubernetes
    assert workers.inputs["spec"]["replicas"] == 0
    assert workers.ignore_changes == ["spec.replicas"]
    # Pulumi does not wait for worker pods (they may wait for nodes); it does for the scheduler
    assert workers.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    assert "pulumi.com/skipAwait" not in scheduler.inputs["metadata"].get("annotations", {})
    assert scheduler.ignore_changes == []
    assert scheduler.inputs["spec"]["replicas"] == 1


def test_every_registered_object_passes_the_openapi_schema(graph_aws):
    errors = [e for n in kube(graph_aws) for e in schema_errors(n.inputs, "1.34")]
    assert errors == []


# ---------------------------------------------------------------- RBAC


def test_role_grants_exactly_what_the_preload_needs(graph_aws):
    role = graph_aws.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "dask-role")
    rules = role.inputs["rules"]
    assert rules == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": ["dask-worker"],
            "verbs": ["get", "patch", "update"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["dask-worker"],
            "verbs": ["get", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    flat = json.dumps(rules)
    assert "*" not in flat and "secrets" not in flat
    # the name it is pinned to is the worker Deployment's
    assert deployment(graph_aws, "worker").inputs["metadata"]["name"] == rules[0]["resourceNames"][0]


def test_binding_gives_the_role_to_the_scheduler_service_account_only(graph_aws):
    binding = graph_aws.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    role = graph_aws.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "dask-role")
    sched_sa = pod(graph_aws, "scheduler")["spec"]["serviceAccountName"]
    assert binding.inputs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role.inputs["metadata"]["name"],
    }
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": sched_sa, "namespace": "adask-test"}
    ]
    sas = {
        n.inputs["metadata"]["name"]: n.inputs for n in graph_aws.of_type("kubernetes:core/v1:ServiceAccount")
    }
    worker_sa = pod(graph_aws, "worker")["spec"]["serviceAccountName"]
    assert worker_sa != sched_sa and sas[worker_sa]["automountServiceAccountToken"] is False
    assert pod(graph_aws, "worker")["spec"]["automountServiceAccountToken"] is False


# ---------------------------------------------------------------- shipping the preload


def test_configmap_holds_the_package_files_and_pods_mount_them_on_pythonpath(graph_aws):
    cm = graph_aws.one("kubernetes:core/v1:ConfigMap")
    files = on_disk(PACKAGE)
    for component in ("scheduler", "worker"):
        spec = pod(graph_aws, component)["spec"]
        [vol] = [v for v in spec["volumes"] if "configMap" in v]
        assert vol["configMap"]["name"] == cm.inputs["metadata"]["name"]
        restored = {i["path"]: cm.inputs["data"][i["key"]] for i in vol["configMap"]["items"]}
        assert restored == files
        [container] = spec["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == vol["name"]]
        assert mount["mountPath"] == "/opt/dask-adaptive" and mount["readOnly"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PYTHONPATH"] == "/opt/dask-adaptive"
        # nothing installed at start: the image entrypoint (EXTRA_PIP_PACKAGES) is bypassed
        assert "EXTRA_PIP_PACKAGES" not in env and "command" in container


def test_pod_templates_carry_a_hash_of_the_shipped_files(graph_aws):
    cm = graph_aws.one("kubernetes:core/v1:ConfigMap")
    [vol] = [v for v in pod(graph_aws, "worker")["spec"]["volumes"] if "configMap" in v]
    digest = hashlib.sha256()
    for item in sorted(vol["configMap"]["items"], key=lambda i: i["path"]):
        for part in (item["path"].encode(), cm.inputs["data"][item["key"]].encode()):
            digest.update(len(part).to_bytes(8, "big") + part)
    for component in ("scheduler", "worker"):
        assert (
            pod(graph_aws, component)["metadata"]["annotations"]["adaptive-dask/preload-sha256"]
            == digest.hexdigest()
        )


# ---------------------------------------------------------------- scheduler


def preload_settings(argv: list[str]):
    """The preload's Settings from its part of a scheduler command line, through its own click command."""
    from dask_adaptive.config import resolve
    from dask_adaptive.preload import dask_setup

    context = dask_setup.make_context("dask_setup", list(argv))
    return resolve(context.params)


def test_scheduler_pod(graph_aws):
    dep = deployment(graph_aws, "scheduler").inputs
    spec = dep["spec"]["template"]["spec"]
    [c] = spec["containers"]
    [worker] = pod(graph_aws, "worker")["spec"]["containers"]
    worker_threads = worker["command"][worker["command"].index("--nthreads") + 1]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert c["image"] == "ghcr.io/dask/dask:2026.8.0-py3.12"
    command = c["command"]
    preload_at = command.index("dask_adaptive.preload") + 1
    assert command[:preload_at] == [
        "dask",
        "scheduler",
        "--port",
        "8786",
        "--dashboard-address",
        ":8787",
        "--protocol",
        "tls",
        "--preload",
        "dask_adaptive.preload",
    ]
    # The rest is read by the preload's own parser (its click command, then `resolve`): what the scheduler
    # would run with, whatever the flags are called.
    settings = preload_settings(command[preload_at:])
    assert (settings.backend, settings.namespace, settings.deployment) == (
        "kubernetes",
        "adask-test",
        "dask-worker",
    )
    assert settings.selector == (
        "app.kubernetes.io/name=dask,app.kubernetes.io/instance=adask-test,app.kubernetes.io/component=worker"
    )
    assert (settings.min_workers, settings.max_workers) == (0, 10)
    assert (settings.interval, settings.target_duration, settings.scale_down_delay) == (1.0, 5.0, 60.0)
    # a scale-up from zero divides the scheduler's core count by the workers' own --nthreads
    assert settings.worker_threads == int(worker_threads)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"tcp-comm": 8786, "http-dashboard": 8787}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http-dashboard"}
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "1000m", "memory": "2048Mi"}
    assert spec["nodeSelector"] == {"adaptive-dask/pool": "system"}
    assert (
        dep["spec"]["template"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"]
        == "false"
    )
    assert spec["serviceAccountName"] == "dask-scheduler"


@pytest.mark.parametrize("component", ["scheduler", "worker"])
def test_pods_are_locked_down(graph_aws, component):
    spec = pod(graph_aws, component)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = spec["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_recommended_labels_everywhere(graph_aws):
    for node in kube(graph_aws):
        labels = node.inputs["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "dask"
        assert labels["app.kubernetes.io/part-of"] == "adaptive-dask"
        assert labels["app.kubernetes.io/managed-by"] == "pulumi"
        assert {
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/version",
        } <= set(labels)


def test_services(graph_aws):
    services = {
        n.inputs["metadata"]["name"]: n.inputs["spec"]
        for n in graph_aws.of_type("kubernetes:core/v1:Service")
    }
    sched = services["dask-scheduler"]
    assert sched["type"] == "ClusterIP"
    assert {(p["name"], p["port"]) for p in sched["ports"]} == {("tcp-comm", 8786), ("http-dashboard", 8787)}
    sched_labels = pod(graph_aws, "scheduler")["metadata"]["labels"]
    assert sched["selector"].items() <= sched_labels.items()
    lb = services["dask-dashboard"]
    assert lb["type"] == "LoadBalancer" and lb["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
    assert [p["port"] for p in lb["ports"]] == [8787]
    [lb_node] = [
        n
        for n in graph_aws.of_type("kubernetes:core/v1:Service")
        if n.inputs["metadata"]["name"] == "dask-dashboard"
    ]
    annotations = lb_node.inputs["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"


def test_exposed_dashboard_output_names_the_allowed_networks():
    _, box = run(aws({"dashboardAllowedCidrs": ["10.20.0.0/16", "192.168.1.0/24"]}))
    text = resolve(box["cluster"].dashboard)
    assert ":8787" in text and "10.20.0.0/16, 192.168.1.0/24" in text


# ---------------------------------------------------------------- workers


def test_worker_pod(graph_aws):
    spec = pod(graph_aws, "worker")["spec"]
    [c] = spec["containers"]
    memory_limit = int(c["command"][c["command"].index("--memory-limit") + 1])
    threads = int(c["command"][c["command"].index("--nthreads") + 1])
    assert c["command"] == [
        "dask",
        "worker",
        "tls://dask-scheduler.adask-test.svc.cluster.local:8786",
        "--name",
        "$(POD_NAME)",
        "--nthreads",
        str(threads),
        "--memory-limit",
        str(memory_limit),
        "--dashboard-address",
        ":8788",
        "--local-directory",
        "/scratch",
        "--preload",
        "dask_adaptive.worker",
        "--preload-nanny",
        "dask_adaptive.worker",
    ]
    env = {e["name"]: e for e in c["env"]}
    sigterm_timeout = int(env["DASK_ADAPTIVE__WORKER__SIGTERM_TIMEOUT"]["value"].removesuffix("s"))
    assert 0 < sigterm_timeout < spec["terminationGracePeriodSeconds"]
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Dask's limits agree with the container's: memory under the container limit, threads ~ cores
    limits = c["resources"]["limits"]
    assert c["resources"]["requests"] == limits
    container_bytes = int(limits["memory"].removesuffix("Mi")) * 2**20
    assert 0.9 * container_bytes < memory_limit < container_bytes
    cores = int(limits["cpu"].removesuffix("m")) / 1000
    assert abs(threads - cores) < 1
    assert c["ports"] == [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/dask-adaptive/ready", "port": "http-dashboard"}
    assert "livenessProbe" not in c
    [scratch] = [v for v in spec["volumes"] if v["name"] == "scratch"]
    assert scratch["emptyDir"]["sizeLimit"].endswith("Mi")
    assert spec["terminationGracePeriodSeconds"] == 120
    annotations = pod(graph_aws, "worker")["metadata"]["annotations"]
    assert "controller.kubernetes.io/pod-deletion-cost" not in annotations  # owned by the preload
    assert annotations.get("cluster-autoscaler.kubernetes.io/safe-to-evict") != "false"


def test_workers_fill_the_worker_node(graph_aws):
    from infra.facts.instance_types import pod_capacity

    limits = pod(graph_aws, "worker")["spec"]["containers"][0]["resources"]["limits"]
    cap = pod_capacity("m6i.xlarge")
    assert int(limits["cpu"].removesuffix("m")) <= cap.cpu_millicores
    assert cap.memory_mib - 16 <= int(limits["memory"].removesuffix("Mi")) <= cap.memory_mib


def test_workers_land_only_on_worker_groups_and_tolerate_their_taints(graph_aws):
    spec = pod(graph_aws, "worker")["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "adaptive-dask/pool", "operator": "In", "values": ["spot", "ondemand"]}
            ]
        }
    ]
    assert spec["tolerations"] == [
        {"key": "adaptive-dask/dask-worker", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "dask", "effect": "NoSchedule"},
    ]


def test_worker_pods_prefer_nodes_running_workers_of_this_stack(graph_aws):
    spec = pod(graph_aws, "worker")["spec"]
    (preferred,) = spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["weight"] == 100
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["labelSelector"]["matchLabels"]
        == deployment(graph_aws, "worker").inputs["spec"]["selector"]["matchLabels"]
    )
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in spec["affinity"]["podAffinity"]
    )  # never blocks


def test_single_worker_group_uses_a_node_selector():
    one = builders.aws((builders.group("spot", ("m5.large",), "SPOT", 3, 50),), version="1.34")
    settings = builders.dask(None, target="aws", cluster=one, namespace="x")
    graph, _ = run(settings)
    spec = pod(graph, "worker")["spec"]
    assert spec["nodeSelector"] == {"adaptive-dask/pool": "spot"} and set(spec["affinity"]) == {"podAffinity"}


# ---------------------------------------------------------------- outputs, variants


def test_outputs_give_the_in_cluster_address_and_the_worker_contract():
    graph, box = run(aws())
    cluster = box["cluster"]
    assert resolve(cluster.scheduler_address) == "tls://dask-scheduler.adask-test.svc.cluster.local:8786"
    assert resolve(cluster.namespace) == "adask-test"
    assert resolve(cluster.worker_deployment) == "dask-worker"
    selector = dict(kv.split("=") for kv in resolve(cluster.worker_selector).split(","))
    assert deployment(graph, "worker").inputs["spec"]["selector"]["matchLabels"] == selector
    assert "kubectl -n adask-test port-forward svc/dask-scheduler 8787:8787" in resolve(cluster.dashboard)
    assert not graph.of_type("kubernetes:core/v1:Service") or all(
        n.inputs["spec"]["type"] == "ClusterIP" for n in graph.of_type("kubernetes:core/v1:Service")
    )


def test_local_target_has_no_node_constraints_and_a_private_dashboard():
    graph, _ = run(local())
    for component in ("scheduler", "worker"):
        spec = pod(graph, component)["spec"]
        assert "nodeSelector" not in spec and "tolerations" not in spec
        # no node constraint; workers only prefer each other's nodes (packing, on any cluster)
        assert set(spec.get("affinity", {})) == ({"podAffinity"} if component == "worker" else set())
    assert [n.inputs["spec"]["type"] for n in graph.of_type("kubernetes:core/v1:Service")] == ["ClusterIP"]
    errors = [e for n in kube(graph) for e in schema_errors(n.inputs, "1.33")]
    assert errors == []


def test_preview_with_unknown_provider_outputs_still_registers_everything():
    graph, _ = run(aws(), preview=True)
    assert len(kube(graph)) == 25  # the aws graph above less the dashboard Service and its NetworkPolicy
    assert deployment(graph, "worker").ignore_changes == ["spec.replicas"]


def test_pass_through_preload_options_reach_the_scheduler_as_set(stack_graph):
    """Issue 21: a preload option marked stack=True in dask_adaptive/options.py needs no infra code."""
    overrides = {
        "adaptive-dask:dask": json.dumps({"orphanGrace": "10m", "retireTimeout": 90, "nodePacking": False})
    }
    g = stack_graph("local", overrides=overrides)
    command = deployment(g, "scheduler").inputs["spec"]["template"]["spec"]["containers"][0]["command"]
    settings = preload_settings(command[command.index("dask_adaptive.preload") + 1 :])
    assert (settings.orphan_grace, settings.retire_timeout, settings.node_packing) == (600.0, 90.0, False)


@pytest.mark.parametrize(
    ("dask", "key", "allowed"),
    [
        ({"orphanGrace": 0}, "dask.orphanGrace", "finite duration > 0"),  # the preload's own rule
        ({"nodePacking": "maybe"}, "dask.nodePacking", "true or false"),
        ({"retireTimeout": "soon"}, "dask.retireTimeout", "seconds"),
    ],
)
def test_bad_pass_through_values_fail_at_preview_naming_the_stack_key(dask, key, allowed):
    from infra.config.load import load_settings
    from infra.errors import ConfigError
    from testbed.infra.harness import install, run_program

    install(stack="test", config={"adaptive-dask:target": "local", "adaptive-dask:dask": json.dumps(dask)})
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"adaptive-dask:{key}" and allowed in caught.value.allowed
