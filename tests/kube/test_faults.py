"""The fault-injection proxy: every fault is observed by a real client, and the rest passes through to
the real apiserver (TLS trusted through the cluster CA, watch streams included)."""

from __future__ import annotations

import json
import threading

import pytest
import urllib3

from testbed.kube.control_plane import wait_for
from testbed.kube.nodes import NodeSpec

pytestmark = pytest.mark.kube


def raw(kube, proxy, method, path, token=None, body=None):
    """One request through the proxy, trusting only the cluster CA; returns (status, headers, json)."""
    pool = urllib3.PoolManager(ca_certs=kube.ca_file, cert_reqs="CERT_REQUIRED", retries=False, timeout=10)
    headers = {"Authorization": f"Bearer {token or kube.admin_token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/merge-patch+json"
    resp = pool.request(method, proxy.url + path, body=data, headers=headers)
    return resp.status, resp.headers, json.loads(resp.data) if resp.data else None


@pytest.fixture
def deployment(kube, namespace):
    kube.rest().post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "metadata": {"name": "w"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "w"}},
                "template": {
                    "metadata": {"labels": {"app": "w"}},
                    "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "9"]}]},
                },
            },
        },
    )
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/w/scale"


def test_conflict_then_pass_through(kube, fault_proxy, deployment):
    fault_proxy.conflict(method="PATCH", path=r"/scale$", times=1)
    status, _, body = raw(kube, fault_proxy, "PATCH", deployment, body={"spec": {"replicas": 2}})
    assert status == 409 and body["reason"] == "Conflict" and body["kind"] == "Status"
    assert raw(kube, fault_proxy, "GET", deployment)[2]["spec"].get("replicas", 0) == 0  # never reached it
    status, _, body = raw(kube, fault_proxy, "PATCH", deployment, body={"spec": {"replicas": 2}})
    assert status == 200 and body["spec"]["replicas"] == 2
    assert fault_proxy.counts["409"] == 1 and fault_proxy.passed == 2


def test_throttle_with_retry_after_for_n_requests(kube, fault_proxy, deployment):
    rule = fault_proxy.throttle(retry_after=3, method="GET", path="/scale", times=2)
    answers = [raw(kube, fault_proxy, "GET", deployment) for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "3"
    assert answers[0][2]["details"]["retryAfterSeconds"] == 3
    assert rule.hits == 2 and not rule.active


def test_server_error_and_method_filter(kube, fault_proxy, deployment):
    fault_proxy.server_error(500, method="PATCH", times=None)
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 200  # GETs are not matched
    assert raw(kube, fault_proxy, "PATCH", deployment, body={"spec": {"replicas": 1}})[0] == 500
    fault_proxy.clear()
    assert raw(kube, fault_proxy, "PATCH", deployment, body={"spec": {"replicas": 1}})[0] == 200
    assert fault_proxy.counts["500"] == 1


def test_slow_response_still_arrives(kube, fault_proxy, deployment):
    fault_proxy.slow(0.5, path="/scale", times=1)
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 200
    assert fault_proxy.counts["delay"] == 1


def test_slow_response_trips_a_client_timeout(kube, fault_proxy, deployment):
    fault_proxy.slow(3.0, path="/scale", times=1)
    pool = urllib3.PoolManager(ca_certs=kube.ca_file, cert_reqs="CERT_REQUIRED", retries=False)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        pool.request(
            "GET",
            fault_proxy.url + deployment,
            headers={"Authorization": f"Bearer {kube.admin_token}"},
            timeout=urllib3.Timeout(connect=5, read=0.5),
        )


@pytest.mark.parametrize("reset", [False, True])
def test_dropped_connection(kube, fault_proxy, deployment, reset):
    fault_proxy.drop(path="/scale", times=1, reset=reset)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        raw(kube, fault_proxy, "GET", deployment)
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 200
    assert fault_proxy.counts["drop"] == 1


def test_rotated_token_gets_401(kube, namespace, fault_proxy, deployment):
    old = kube.service_account_token(namespace, "default")
    new = kube.service_account_token(namespace, "default", expiration_seconds=3601)  # same second: same JWT
    assert old != new
    fault_proxy.reject_token(old)
    status, _, body = raw(kube, fault_proxy, "GET", f"/api/v1/namespaces/{namespace}/pods", token=old)
    assert status == 401 and body["reason"] == "Unauthorized"
    # The new token reaches the real apiserver, whose RBAC then answers (the default SA has no Role).
    assert raw(kube, fault_proxy, "GET", f"/api/v1/namespaces/{namespace}/pods", token=new)[0] == 403
    assert fault_proxy.counts["401"] == 1


def test_watch_streams_through_the_proxy(kube, namespace, fault_proxy):
    events = []
    proxied = kube.rest(url=fault_proxy.url)

    def watch():
        for ev in proxied.watch(f"/api/v1/namespaces/{namespace}/configmaps", timeout_seconds=20):
            events.append(ev)
            if ev["object"]["metadata"]["name"] == "seen":
                return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    wait_for(lambda: fault_proxy.passed >= 1, 10, message="watch request forwarded")
    kube.rest().post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "seen"}})
    t.join(20)
    assert any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "seen" for e in events)


POLLER = (
    "import json, os, ssl, time, urllib.request, urllib.error\n"
    "sa = os.environ['DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR']\n"
    "ctx = ssl.create_default_context(cafile=os.path.join(sa, 'ca.crt'))\n"
    "ns = open(os.path.join(sa, 'namespace')).read()\n"
    "url = 'https://%s:%s/api/v1/namespaces/%s/pods/%s' % (os.environ['KUBERNETES_SERVICE_HOST'],\n"
    "      os.environ['KUBERNETES_SERVICE_PORT'], ns, os.environ['HOSTNAME'])\n"
    "while True:\n"
    "    token = open(os.path.join(sa, 'token')).read()  # re-read each time, as the preload must\n"
    "    req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token})\n"
    "    try:\n"
    "        code = urllib.request.urlopen(req, context=ctx, timeout=5).status\n"
    "    except urllib.error.HTTPError as e:\n"
    "        code = e.code\n"
    "    print('CODE', code, flush=True)\n"
    "    time.sleep(0.2)\n"
)


@pytest.mark.parametrize("rotate", [False, True])
def test_a_pod_talks_to_the_apiserver_through_the_proxy(
    kube, namespace, fault_proxy, kubelet_factory, rotate
):
    rest = kube.rest()
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "metadata": {"name": "get-pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {"metadata": {"name": "get-pods"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "get-pods"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]},
    )  # fmt: skip
    k = kubelet_factory([NodeSpec.pool("proxy-n1", "system")], api_port=fault_proxy.port)
    rest.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {"metadata": {"name": "poller"},
         "spec": {"containers": [{"name": "c", "image": "x", "command": ["python", "-c", POLLER]}]}},
    )  # fmt: skip

    def codes():
        return [
            ln.split()[1] for ln in k.log_text(namespace, "poller").splitlines() if ln.startswith("CODE ")
        ]

    wait_for(lambda: "200" in codes(), 60, message="the pod's first successful call via the proxy")
    runner = k.runner(namespace, "poller")
    if rotate:
        old, new = k.rotate_token(namespace, "poller")
        assert old != new
        fault_proxy.reject_token(old)  # the old token is revoked; the pod re-reads the file and goes on
        seen = len(codes())
        wait_for(lambda: codes()[seen:].count("200") >= 3, 30, message="calls with the rotated token")
        assert "401" not in codes()[seen + 1 :]
    else:
        fault_proxy.reject_token(runner.token)
        wait_for(lambda: "401" in codes(), 30, message="the pod seeing 401")
    assert any(path.endswith("/pods/poller") for _, path, _ in fault_proxy.log)


def test_a_time_window_rule_expires(kube, fault_proxy, deployment):
    rule = fault_proxy.server_error(503, path="/scale", times=None, duration=30.0)
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 503
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 503
    rule.armed_at -= 31.0  # the window has passed (no sleeping in tests)
    assert raw(kube, fault_proxy, "GET", deployment)[0] == 200
    assert not rule.active and fault_proxy.counts["503"] == 2
