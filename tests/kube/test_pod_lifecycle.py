"""Pod lifecycle as a kubelet performs it: SIGTERM → grace → SIGKILL → finalise, restarts, clean stop,
and what a container sees (env, downward API, volumes, ServiceAccount, rewritten ports)."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.nodes import NodeSpec
from testbed.kube.pod_files import SA_DIR_ENV
from testbed.kube.rest import ApiError

pytestmark = pytest.mark.kube

IGNORE_TERM = (
    "import signal, sys, time\n"
    "def on_term(*_):\n"
    "    print('got SIGTERM', flush=True)\n"
    "    if sys.argv[1] == 'exit': sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "print('started', flush=True)\n"
    "while True: time.sleep(0.1)\n"
)


def bare_pod(name, command, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "ignored", "command": command}], **spec},
    }


def running(kube, ns, name):
    pod = kube.rest().get_or_none(f"/api/v1/namespaces/{ns}/pods/{name}")
    return pod if pod and pod["status"].get("phase") == "Running" else None


def gone(kube, ns, name):
    return kube.rest().get_or_none(f"/api/v1/namespaces/{ns}/pods/{name}") is None


@pytest.mark.parametrize("behaviour", ["ignore", "exit"])
def test_deletion_sends_sigterm_then_sigkill_after_grace(kube, namespace, kubelet, behaviour):
    rest = kube.rest()
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods",
        bare_pod("t", ["python", "-c", IGNORE_TERM, behaviour], terminationGracePeriodSeconds=2),
    )
    wait_for(lambda: running(kube, namespace, "t"), 60, message="pod t running")
    proc = kubelet.runner(namespace, "t").container().proc
    # the child's own line: the harness's start marker quotes the argv, which holds the word too, and a
    # SIGTERM sent before the handler is installed would kill the process silently
    wait_for(lambda: "\nstarted\n" in kubelet.log_text(namespace, "t"), 30, message="process started")
    rest.delete(f"/api/v1/namespaces/{namespace}/pods/t")
    wait_for(lambda: gone(kube, namespace, "t"), 30, message="pod t finalised")
    log = kubelet.log_text(namespace, "t")
    assert log.index("SIGTERM (grace 2s)") < log.index("\ngot SIGTERM\n")
    if behaviour == "ignore":
        assert "SIGKILL after grace" in log
        assert proc.returncode == -signal.SIGKILL
    else:
        assert "SIGKILL after grace" not in log
        assert proc.returncode == 0


def test_exited_containers_restart_with_backoff_and_count(kube, namespace, kubelet):
    rest = kube.rest()
    rest.post(f"/api/v1/namespaces/{namespace}/pods", bare_pod("crash", ["sh", "-c", "echo run; exit 3"]))

    def restarted_twice():
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/crash")
        st = (pod["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount", 0) >= 2 else None

    st = wait_for(restarted_twice, 60, message="restartCount >= 2")
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert kubelet.log_text(namespace, "crash").count("run\n") >= 2


def test_restart_policy_never_ends_in_phase_failed(kube, namespace, kubelet):
    rest = kube.rest()
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods",
        bare_pod("once", ["sh", "-c", "exit 4"], restartPolicy="Never"),
    )
    pod = wait_for(
        lambda: (lambda p: p if p["status"].get("phase") == "Failed" else None)(
            rest.get(f"/api/v1/namespaces/{namespace}/pods/once")
        ),
        60,
        message="phase Failed",
    )
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4


def test_stop_kills_every_process_group_and_cleans_up(kube, namespace, kubelet_factory):
    k = kubelet_factory([NodeSpec.pool("leak-n1", "system")])
    rest = kube.rest()
    # The child outlives nothing: the harness must kill the whole process group, not only the leader.
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods", bare_pod("fam", ["sh", "-c", "sleep 1000 & sleep 1000"])
    )
    wait_for(lambda: running(kube, namespace, "fam"), 60, message="pod fam running")
    leader = k.runner(namespace, "fam").container().proc.pid
    wait_for(lambda: len(psutil.Process(leader).children()) >= 1, 10, message="child spawned")
    family = [leader] + [c.pid for c in psutil.Process(leader).children(recursive=True)]
    k.stop()
    assert k.leaked_process_groups() == []
    for pid in family:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert gone(kube, namespace, "fam")
    assert rest.get_or_none("/api/v1/nodes/leak-n1") is None


PROBE_ENV = (
    "import json, os, sys, importlib\n"
    "sys.path.insert(0, os.environ['PYTHONPATH'])\n"
    "mod = importlib.import_module('shipped')\n"
    "sa = os.environ['DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR']\n"
    "out = {k: os.environ.get(k) for k in ('POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'NODE', 'POD_IP',\n"
    "       'CPU', 'MEM_MI', 'GREETING', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'FROM_CM',\n"
    "       'SA_PATH')}\n"
    "out['argv'] = sys.argv[1:]\n"
    "out['shipped'] = mod.VALUE\n"
    "out['sa_files'] = sorted(os.listdir(sa))\n"
    "out['sa_namespace'] = open(os.path.join(sa, 'namespace')).read()\n"
    "out['scratch_is_dir'] = os.path.isdir(sys.argv[3])\n"
    "print('RESULT ' + json.dumps(out), flush=True)\n"
    "import time; time.sleep(3600)\n"
)


def test_container_sees_env_downward_api_volumes_and_service_account(kube, namespace, kubelet):
    rest = kube.rest()
    rest.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "code"}, "data": {"shipped.py": "VALUE = 42\n", "greeting": "hello"}},
    )
    kube.create_service_account(namespace, "runner")
    field = lambda path: {"fieldRef": {"fieldPath": path}}  # noqa: E731
    container = {
        "name": "c",
        "image": "ignored",
        "command": ["python", "-c", PROBE_ENV],
        "args": ["--port", "8786", "/scratch", "--dashboard-address", ":8787", "$(GREETING)-$(POD_NAME)"],
        "ports": [{"containerPort": 8786}, {"containerPort": 8787}],
        "resources": {"limits": {"cpu": "1500m", "memory": "256Mi"}},
        "env": [
            {"name": "POD_NAME", "valueFrom": field("metadata.name")},
            {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "POD_UID", "valueFrom": field("metadata.uid")},
            {"name": "NODE", "valueFrom": field("spec.nodeName")},
            {"name": "POD_IP", "valueFrom": field("status.podIP")},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "code", "key": "greeting"}}},
            {"name": "FROM_CM", "value": "$(GREETING) world"},
            {"name": "PYTHONPATH", "value": "/opt/dask-adaptive"},
            {"name": "SA_PATH", "value": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
        ],
        "volumeMounts": [
            {"name": "code", "mountPath": "/opt/dask-adaptive"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    pod = bare_pod("probe", None, serviceAccountName="runner")
    pod["spec"]["containers"] = [container]
    pod["spec"]["volumes"] = [
        {
            "name": "code",
            "configMap": {"name": "code", "items": [{"key": "shipped.py", "path": "shipped.py"}]},
        },
        {"name": "scratch", "emptyDir": {}},
    ]
    rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    line = wait_for(
        lambda: next(
            (ln for ln in kubelet.log_text(namespace, "probe").splitlines() if ln.startswith("RESULT ")), None
        ),
        60,
        message="the probe container's report",
    )
    out = json.loads(line[len("RESULT ") :])
    live = rest.get(f"/api/v1/namespaces/{namespace}/pods/probe")
    runner = kubelet.runner(namespace, "probe")
    assert out["POD_NAME"] == "probe" and out["POD_NAMESPACE"] == namespace
    assert out["POD_UID"] == live["metadata"]["uid"]
    assert out["NODE"] == live["spec"]["nodeName"] and out["POD_IP"] == "127.0.0.1"
    assert (out["CPU"], out["MEM_MI"]) == ("2", "256")  # cpu rounds up to whole cores, as Kubernetes does
    assert out["FROM_CM"] == "hello world"
    assert out["shipped"] == 42  # ConfigMap volume on PYTHONPATH, via the rewritten mountPath
    assert out["sa_files"] == ["ca.crt", "namespace", "token"] and out["sa_namespace"] == namespace
    assert out["SA_PATH"] == str(runner.sa_dir / "token")
    assert out["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and out["KUBERNETES_SERVICE_PORT"] == str(kube.port)
    p8786, p8787 = runner.ports[8786], runner.ports[8787]
    assert out["argv"][:2] == ["--port", str(p8786)] and out["argv"][3:5] == [
        "--dashboard-address",
        f":{p8787}",
    ]
    assert out["argv"][5] == "hello-probe" and out["scratch_is_dir"]
    # The token is real: the apiserver authenticates it as the pod's ServiceAccount, bound to the pod.
    token = (runner.sa_dir / "token").read_text()
    review = rest.post(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
    )
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:runner"
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["probe"]
    # ...and RBAC applies to it: the new ServiceAccount has no Role, so reading pods is forbidden.
    with pytest.raises(ApiError) as denied:
        kube.rest(token=token).items(f"/api/v1/namespaces/{namespace}/pods")
    assert denied.value.status == 403
    assert os.environ.get(SA_DIR_ENV) is None  # the test process itself is not configured by the harness


def test_liveness_failure_restarts_and_startup_probe_gates_readiness(kube, namespace, kubelet, tmp_path):
    rest = kube.rest()
    flag = tmp_path / "started"
    server = ["python", "-m", "http.server", "8080", "--bind", "127.0.0.1"]
    pod = bare_pod("probes", None, terminationGracePeriodSeconds=1)
    pod["spec"]["containers"] = [
        {   # liveness asks for a path the server does not have: 404 → killed and restarted
            "name": "dies", "image": "x", "command": server, "ports": [{"containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/nope", "port": 8080}, "periodSeconds": 1,
                              "failureThreshold": 2},
        },
        {   # ready by tcpSocket at once, but only after the startup probe's flag file exists
            "name": "gated", "image": "x", "command": [*server[:3], "9090", *server[4:]],
            "ports": [{"containerPort": 9090}],
            "startupProbe": {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1,
                             "failureThreshold": 1000},
            "readinessProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 1},
        },
    ]  # fmt: skip
    rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)

    def statuses():
        p = rest.get(f"/api/v1/namespaces/{namespace}/pods/probes")
        return {c["name"]: c for c in p["status"].get("containerStatuses") or []}

    wait_for(lambda: statuses().get("dies", {}).get("restartCount", 0) >= 1, 60, message="liveness restart")
    assert "liveness probe failed 2 times, killing" in kubelet.log_text(namespace, "probes", "dies")
    gated = statuses()["gated"]
    assert gated["state"].get("running") and not gated["started"] and not gated["ready"]
    flag.touch()
    wait_for(lambda: statuses()["gated"]["ready"], 30, message="gated container ready after startup")
    assert statuses()["gated"]["started"]
