"""Issue 23 §1 on the real 1.20 control plane: the dev stack's own notebook objects (recorded from the
Pulumi program under mocks, dask.jupyter on in stacks/Pulumi.dev.yaml) applied with the stack's scheduler
and workers; the kubelet harness runs the notebook pod's real commands.

Shown: the init container fills the empty token Secret through the API with its own projected
ServiceAccount token, and hands it to the lab as a file; the lab container is `jupyter lab` from the pod
spec, with the pod's env, the client certificate and the ConfigMap's config; a kernel in it runs
`Client()` with no arguments and computes over mutual TLS on a worker pod the preload started; the
scheduler's dashboard answers through the lab's proxy at the link `client.dashboard_link` gives, and
not without the token. A new pod (a restart) keeps the token: the Secret is filled once.

What differs from a cluster, and why (the harness's, not the program's): every container runs as this
machine's user, root here, so jupyter is allowed root by the harness's environment (JUPYTER_CONFIG_PATH,
testbed/dask/jupyter.py `root_override`; the pod runs as uid 1000 and the stack's config leaves jupyter's
refusal of root on); with no cluster DNS, Service names and mount paths are rewritten in the ConfigMap's
files as in command lines (Kubelet `rewrite_config_files`), so the proxy's allow-list names the
scheduler Service's local forwarder; the home claim binds to a hostPath PersistentVolume this test makes
in the stack's StorageClass (EKS's EBS CSI driver provisions it there: only EKS can confirm that).
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from infra.k8s import jupyter as notebook
from infra.k8s import jupyter_lab
from testbed.dask.jupyter import LabClient, root_override
from testbed.infra import builders
from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready
from testbed.kube.stack_apply import apply, nodes_for, record_stack, selected_pods

pytestmark = pytest.mark.kube

STACK = "dev"  # with its notebook on, on the team's image (the committed stack has it off)
COMPUTE = """
from distributed import Client
c = Client()
print(c.submit(lambda x: x + 1, 41).result(), c.dashboard_link)
print(c.scheduler.address)
print(sorted(w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()))
"""


def home_volume(claim: dict, path: Path) -> dict:
    """A PersistentVolume the claim can bind: its StorageClass, size and access mode, on this machine."""
    spec = claim["spec"]
    pv_spec = {
        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
        "accessModes": spec["accessModes"],
        "persistentVolumeReclaimPolicy": "Delete",
        "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
    }
    if spec.get("storageClassName"):
        pv_spec["storageClassName"] = spec["storageClassName"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"home-{uuid.uuid4().hex[:8]}"},
        "spec": pv_spec,
    }


def test_the_notebook_pod_computes_over_tls_with_client_and_proxies_the_dashboard(
    kube, namespace, kubelet_factory, tmp_path
):
    objs = record_stack(STACK, builders.jupyter_overrides(STACK, **builders.DEV_NOTEBOOK))
    ns, admin = objs.namespace, kube.rest()
    if admin.get_or_none(f"/api/v1/namespaces/{ns}"):  # a previous run in this session
        kube.delete_namespace(ns)
        wait_for(lambda: admin.get_or_none(f"/api/v1/namespaces/{ns}") is None, 60, message=f"{ns} gone")
    claim = objs.find("PersistentVolumeClaim", notebook.HOME_CLAIM)
    volume = home_volume(claim, tmp_path / "home-volume")
    admin.post("/api/v1/persistentvolumes", volume)
    k = kubelet_factory(
        nodes_for(objs),
        namespaces=[ns],
        probe_period_scale=0.2,
        extra_env=root_override(tmp_path / "as-root"),
        rewrite_config_files=True,
    )
    try:
        apply(admin, objs.objects, objs.patches)
        selector = objs.find("Deployment", notebook.NOTEBOOK)["spec"]["selector"]["matchLabels"]
        _check(admin, k, ns, ",".join(f"{a}={b}" for a, b in selector.items()))
    finally:
        kube.delete_namespace(ns)
        admin.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")


def _notebook_pod(admin, ns: str, selector: str, not_named: str = "") -> dict | None:
    pods = [
        p
        for p in admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
        if p["metadata"]["name"] != not_named and not p["metadata"].get("deletionTimestamp")
    ]
    return pods[0] if len(pods) == 1 and pod_ready(pods[0]) else None


def _secret_token(admin, ns: str) -> tuple[str, str]:
    secret = admin.get(f"/api/v1/namespaces/{ns}/secrets/{notebook.TOKEN_SECRET}")
    data = secret.get("data") or {}
    token = base64.b64decode(data[jupyter_lab.TOKEN_FILE_NAME]).decode() if data else ""
    return token, secret["metadata"]["resourceVersion"]


def _check(admin, k, ns: str, selector: str) -> None:
    def tails() -> str:
        return "\n".join(f"--- {name}\n{text}" for name, text in k.log_tails(40).items())

    pod = wait_for(
        lambda: _notebook_pod(admin, ns, selector), 120, message=lambda: f"the notebook pod Ready:\n{tails()}"
    )
    name = pod["metadata"]["name"]
    token, version = _secret_token(admin, ns)
    assert len(token) >= 32, "the init container filled the empty Secret"
    runner = k.runner(ns, name)
    token_file = runner.dir / "volumes" / "token" / jupyter_lab.TOKEN_FILE_NAME
    assert token_file.read_text() == token, "the lab reads the Secret's token, no newline added"
    client_cert = x509.load_pem_x509_certificate(
        (runner.dir / "volumes" / "client-tls" / "tls.crt").read_bytes()
    )
    usages = client_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH], "the lab holds the client certificate only"

    # the stored policies, as the API server selects pods: the scheduler admits the notebook on its two
    # ports; the workers (which admit any `name: dask` pod) do not select it
    selected = {}
    for policy in ("dask-scheduler-from-notebook", "dask-workers-from-dask"):
        spec = admin.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{policy}")["spec"]
        selected[policy] = selected_pods(admin, ns, spec["ingress"][0]["from"][0]["podSelector"])
    assert name in selected["dask-scheduler-from-notebook"] and name not in selected["dask-workers-from-dask"]

    lab = LabClient(f"http://{k.service_address(ns, notebook.NOTEBOOK, jupyter_lab.LAB_PORT)}", token)
    assert lab.request("/api/kernels", token=False).status == 403
    kernel = lab.start_kernel()
    run = lab.execute(kernel, COMPUTE, timeout=150)
    assert run.error is None, f"{run}\n{tails()}"
    answer, address, workers = run.stdout.splitlines()
    result, link = answer.split(" ", 1)
    assert result == "42"
    assert address.startswith("tls://"), "Client() took the stack's address from the pod's env: TLS"
    assert workers.startswith("['dask-worker-"), "computed on a worker pod the preload started"
    assert link.startswith("/proxy/127.0.0.1:") and link.endswith("/status"), link  # the Service, rewritten

    status = lab.request(link)
    assert status.status == 200 and "bokeh" in status.body.lower(), status
    refused = lab.request(link, token=False)
    assert refused.status in (302, 403), refused

    # a restart (a new pod of the Deployment) keeps the token: the Secret is filled once
    admin.delete(f"/api/v1/namespaces/{ns}/pods/{name}")
    wait_for(
        lambda: _notebook_pod(admin, ns, selector, not_named=name),
        120,
        message=lambda: f"a new notebook pod:\n{tails()}",
    )
    assert _secret_token(admin, ns) == (token, version), "the Secret was not written again"
    wait_for(
        lambda: lab.request("/api/kernels").status == 200, 60, message="the new lab accepts the same token"
    )
