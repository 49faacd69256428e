"""Issue 22 §1 end to end: Dask workers started from the program's own pod template reach S3 with the
credentials EKS Pod Identity delivers, through the SDK's default chain, scoped by the program's policy.

What is real here:
- the dev stack with `dask.dataBuckets` (team-climate-data read under era5/, team-results readwrite under
  runs/), recorded under the Pulumi mocks and applied to the 1.20 control plane with test_stack_applied's
  helpers. The scheduler runs from .venv, the worker from .venv-s3 (the Kubelet's `venv_bin`): .venv's
  lock can only have a botocore older than the container credential provider (tests/s3/requirements.in);
- S3, IAM and STS: moto in server mode on 127.0.0.1. The workers' role gets the program's own trust and
  inline policy (the recorded `WorkerDataRole`), its session comes from STS AssumeRole, and moto's IAM
  enforcement (switched on once the fixtures exist) judges every request of the worker by that policy;
- the Pod Identity agent: a loopback endpoint answering `GET /v1/credentials` as the agent does (the
  `Authorization` header carries the pod's projected token; JSON AccessKeyId, SecretAccessKey, Token,
  AccountId, Expiration). It also plays EKS Auth: the token must be one the real API server authenticates
  (TokenReview) as the associated ServiceAccount (the recorded PodIdentityAssociation), bound to a pod;
  anything else gets 403. Every request is recorded.

The Pod Identity webhook's mutation is made by this test on the worker Deployment's pod template before it
is created (on EKS, EKS's mutating webhook adds it to each pod at creation). As EKS adds it (the EKS user
guide, aws/amazon-eks-pod-identity-webhook's test data): AWS_DEFAULT_REGION, AWS_REGION,
AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE appended to the env; the
projected token volume `eks-pod-identity-token` (audience pods.eks.amazonaws.com, 86400 s) and its
read-only mount; the label eks.amazonaws.com/pod-identity=enabled. Two loopback stand-ins, and only these:
the agent's address http://169.254.170.23/v1/credentials is rewritten to this test's endpoint on
127.0.0.1 (botocore accepts plain HTTP to loopback as it does to the agent's address), and
AWS_ENDPOINT_URL_S3 points the SDK at moto (EKS sets no such variable). The test asserts that the pod's
env, command and volumes are the program's plus exactly these.

Shown: on the worker, `boto3.Session()` with no keys resolves credentials by the container provider
(`container-role`), every provider before it finding nothing (no AWS keys in the env; HOME is the pod's
empty /tmp volume, no ~/.aws); the task reads era5/ and writes runs/; the endpoint saw the pod's token;
a write outside runs/, a write to the read-only bucket and a read outside era5/ are refused by moto's
evaluation of the program's policy; the workers' stored egress NetworkPolicies let them reach the agent's
address and a public address on 443 (S3's endpoints are public), and not IMDS.

What only EKS, IAM and S3 confirm:
- that the association makes EKS's webhook mutate the workers' pods (and not the scheduler's), and that
  pods reach the agent at 169.254.170.23 (host network, and a CNI enforcing the NetworkPolicies: this
  control plane stores them only; on an IPv6 cluster the agent is at [fd00:ec2::23]);
- that EKS Auth accepts the token: its audience (pods.eks.amazonaws.com) is not checked here, the harness
  issues projected tokens for the API server's audience; and that IAM lets pods.eks.amazonaws.com assume
  the role with sts:TagSession (moto does not evaluate a Service principal's trust);
- IAM's full evaluation: moto matches the inline policy's Action and Resource but not its conditions - the
  `s3:prefix` condition on ListBucket (moto refuses every ListBucket under a condition, so listing is not
  tried) and `kms:ViaService` (no KMS here); no SCPs, permission boundaries or bucket policies;
- real S3 over TLS, and refreshing the credentials before they expire on a long run (this endpoint serves
  one STS session).
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from testbed.dask.kube_driver import client_security
from testbed.infra.harness import stack_value
from testbed.kube.control_plane import ControlPlane, die_with_parent, free_port, log_tail, wait_for
from testbed.kube.kubelet import Kubelet, pod_ready
from testbed.kube.rest import Rest
from testbed.kube.stack_apply import (
    SCHEDULER,
    WORKER,
    StackObjects,
    apply,
    nodes_for,
    record_stack,
    selected_pods,
)
from tests.infra.data_role import ASSOCIATION, ROLE, ROLE_POLICY, ours, with_data

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
S3_VENV_BIN = ROOT / ".venv-s3" / "bin"
BUCKETS = [
    {"bucket": "team-climate-data", "prefix": "era5/", "access": "read"},
    {"bucket": "team-results", "prefix": "runs/", "access": "readwrite"},
]
INPUT = ("team-climate-data", "era5/2026/t2m.csv")
ELSEWHERE = ("team-climate-data", "other/t2m.csv")  # exists, outside the read prefix
OUTPUT = ("team-results", "runs/e2e/t2m-mean.txt")
REFUSED = [  # (operation, bucket, key) the policy must refuse
    ("put", "team-results", "elsewhere/t2m-mean.txt"),
    ("put", "team-climate-data", "era5/2026/overwrite.csv"),
    ("get", *ELSEWHERE),
]
AGENT_ADDRESS = "http://169.254.170.23/v1/credentials"  # what EKS injects; rewritten to loopback here
IMDS = "169.254.169.254"
TOKEN_VOLUME = "eks-pod-identity-token"
TOKEN_MOUNT = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
INJECTED = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")  # fmt: skip
STAND_IN = "AWS_ENDPOINT_URL_S3"  # moto instead of the SDK's own S3 endpoint
# The test's own AWS calls and moto: no AWS settings of whoever runs the suite leak in.
CLEAN_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LANG": "C.UTF-8",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def s3_python() -> Path:
    """.venv-s3's interpreter; skipped (failed under CI=true) when bootstrap has not made it."""
    python = S3_VENV_BIN / "python"
    if not python.exists():
        why = f"{python} is missing: 'bash .ci/bootstrap' makes .venv-s3 from tests/s3/requirements.txt"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return python


@contextlib.contextmanager
def by_value() -> Iterator[None]:
    """Pickle this module's functions by value: .venv-s3 cannot import tests/."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


_RUN = (
    "import pickle, sys, cloudpickle; fn, args = cloudpickle.loads(sys.stdin.buffer.read());"
    " sys.stdout.buffer.write(pickle.dumps(fn(*args)))"
)


def in_s3_venv(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in .venv-s3 (a modern boto3; cloudpickle is the same release in both venvs)."""
    with by_value():
        payload = cloudpickle.dumps((fn, args))
    done = subprocess.run(
        [str(s3_python()), "-c", _RUN],
        input=payload,
        env=CLEAN_ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return pickle.loads(done.stdout)


# -- run in .venv-s3 (by value) ------------------------------------------------------------------------------
def s3_prepare(
    endpoint: str, region: str, trust: str, policy: str, objects: dict[tuple[str, str], bytes]
) -> dict[str, Any]:
    """Buckets and objects, the workers' role (the program's trust and policy), an administrator's key and
    the role's STS session; then moto's IAM enforcement on: every later request is judged."""
    import boto3
    import requests

    fixtures = {"endpoint_url": endpoint, "region_name": region, "aws_access_key_id": "fixtures",
                "aws_secret_access_key": "fixtures"}  # fmt: skip
    s3, iam, sts = (boto3.client(name, **fixtures) for name in ("s3", "iam", "sts"))
    for bucket in sorted({b for b, _ in objects}):
        s3.create_bucket(Bucket=bucket)
    for (bucket, key), body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    role = iam.create_role(RoleName="dask-worker-data", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="buckets", PolicyDocument=policy)
    iam.create_user(UserName="test-admin")
    iam.put_user_policy(UserName="test-admin", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(UserName="test-admin")["AccessKey"]
    session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="eks-pod-identity")["Credentials"]
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    expiration = session["Expiration"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "admin": (key["AccessKeyId"], key["SecretAccessKey"]),
        "credentials": {  # the agent's response (eks-pod-identity-agent: EksCredentialsResponse)
            "AccessKeyId": session["AccessKeyId"],
            "SecretAccessKey": session["SecretAccessKey"],
            "Token": session["SessionToken"],
            "AccountId": role["Arn"].split(":")[4],
            "Expiration": expiration,
        },
    }


def s3_objects(endpoint: str, region: str, admin: tuple[str, str], buckets: list[str]) -> dict[str, bytes]:
    """Every object, as an administrator reads it: {"bucket/key": body}."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=admin[0],
        aws_secret_access_key=admin[1],
    )
    out = {}
    for bucket in buckets:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            out[f"{bucket}/{obj['Key']}"] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


# -- run on the worker (by value) ----------------------------------------------------------------------------
def worker_task() -> Callable[..., dict[str, Any]]:
    """The task for the worker, defined locally so that distributed ships it by value (cloudpickle): a
    module-level function would be pickled by name, and neither the scheduler nor a worker imports tests/."""

    def worker_uses_s3(
        read: tuple[str, str], write: tuple[str, str], refused: list[tuple[str, str, str]]
    ) -> dict[str, Any]:
        """The SDK's default chain, no explicit keys: read the input, write its mean under the allowed prefix,
        then try what the policy must refuse. Returns what the chain and S3 did."""
        import os
        import sys

        import boto3
        import botocore
        from botocore.exceptions import ClientError
        from distributed import get_worker

        session = boto3.Session()
        credentials = session.get_credentials()
        resolver = session._session.get_component("credential_provider")
        earlier = {}  # every provider the chain asks before the container provider: it must find nothing
        for provider in resolver.providers:
            if provider.METHOD == "container-role":
                break
            earlier[provider.METHOD] = provider.load() is not None
        s3 = session.client("s3")
        rows = s3.get_object(Bucket=read[0], Key=read[1])["Body"].read().decode().split()[1:]
        mean = f"{sum(float(r) for r in rows) / len(rows):.2f}\n"
        s3.put_object(Bucket=write[0], Key=write[1], Body=mean.encode())
        outcomes = {}
        for op, bucket, key in refused:
            try:
                if op == "get":
                    s3.get_object(Bucket=bucket, Key=key)
                else:
                    s3.put_object(Bucket=bucket, Key=key, Body=b"must not be written\n")
                outcomes[f"{op} {bucket}/{key}"] = "allowed"
            except ClientError as exc:
                outcomes[f"{op} {bucket}/{key}"] = exc.response["Error"]["Code"]
        return {
            "worker": get_worker().name,
            "python": sys.executable,
            "botocore": botocore.__version__,
            "method": credentials.method,
            "access_key": credentials.access_key,
            "earlier": earlier,
            "aws_env": {k: v for k, v in os.environ.items() if k.startswith("AWS_")},
            "home": os.environ.get("HOME"),
            "aws_dir": os.path.exists(os.path.expanduser("~/.aws")),
            "endpoint": s3.meta.endpoint_url,
            "region": s3.meta.region_name,
            "mean": mean,
            "refused": outcomes,
        }

    def on_worker(*args: Any) -> dict[str, Any]:
        import traceback

        try:
            return worker_uses_s3(*args)
        except Exception:  # botocore's exceptions cannot unpickle in .venv (botocore 0.76): send the text
            return {"error": traceback.format_exc()}

    return on_worker


# -- the stand-ins the test starts ---------------------------------------------------------------------------
@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (from .venv-s3); yields its endpoint, stops it afterwards."""
    port = free_port()
    log_path = workdir / "moto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            die_with_parent([str(S3_VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=CLEAN_ENV,
        )  # fmt: skip
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                lambda: (
                    proc.poll() is None
                    and urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).status == 200
                ),
                30,
                0.1,
                message=lambda: f"moto on {endpoint}; log:\n{log_tail(log_path)}",
            )
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@dataclass
class AgentRequest:
    path: str
    token: str
    status: int
    subject: str  # the user the API server authenticated the token as ("" if none)
    pod: str  # the pod the token is bound to ("" if none)


class PodIdentityAgent:
    """`GET /v1/credentials` as the EKS Pod Identity agent answers it, with EKS Auth's check folded in: the
    `Authorization` token must be a live, pod-bound token of the associated ServiceAccount (TokenReview by
    the real API server), else 403. Serves one STS session's credentials; records every request."""

    def __init__(self, rest: Rest, namespace: str, service_account: str, credentials: dict[str, str]) -> None:
        self.rest = rest
        self.subject = f"system:serviceaccount:{namespace}:{service_account}"
        self.credentials = credentials
        self.requests: list[AgentRequest] = []
        self._lock = threading.Lock()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = agent.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
                self.send_response(status)
                kind = "application/json" if isinstance(body, dict) else "text/plain; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="pod-identity-agent", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/credentials"

    def __enter__(self) -> PodIdentityAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, token: str) -> tuple[int, dict[str, str] | str]:
        subject = pod = ""
        if token:
            review = (
                self.rest.post(
                    "/apis/authentication.k8s.io/v1/tokenreviews",
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "spec": {"token": token},
                    },
                ).get("status")
                or {}
            )
            user = (review.get("user") or {}) if review.get("authenticated") else {}
            subject = user.get("username", "")
            pod = ((user.get("extra") or {}).get("authentication.kubernetes.io/pod-name") or [""])[0]
        ok = path == "/v1/credentials" and subject == self.subject and bool(pod)
        with self._lock:
            self.requests.append(AgentRequest(path, token, 200 if ok else 403, subject, pod))
        return (200, dict(self.credentials)) if ok else (403, "no Pod Identity association for this token")


def get_status(url: str, token: str | None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": token} if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


# -- the webhook's mutation ----------------------------------------------------------------------------------
def pod_identity_mutation(template: dict[str, Any], env: list[dict[str, str]]) -> dict[str, Any]:
    """The pod template as EKS's Pod Identity webhook mutates the pods (label, token volume first, `env`
    appended to each container, the token mounted read-only); nothing else is touched."""
    out = copy.deepcopy(template)
    out["metadata"].setdefault("labels", {})["eks.amazonaws.com/pod-identity"] = "enabled"
    spec = out["spec"]
    token = {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": TOKEN_VOLUME}
    volume = {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
    spec["volumes"] = [volume, *(spec.get("volumes") or [])]
    for c in spec["containers"]:
        c["env"] = [*(c.get("env") or []), *env]
        c["volumeMounts"] = [*(c.get("volumeMounts") or []), {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT,
                                                              "readOnly": True}]  # fmt: skip
    return out


def undefaulted(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A pod's env as written: without the `fieldRef.apiVersion` the API server fills in."""
    out = copy.deepcopy(env)
    for e in out:
        ((e.get("valueFrom") or {}).get("fieldRef") or {}).pop("apiVersion", None)
    return out


def egress_allowed(admin: Rest, ns: str, pod: str, ip: str, port: int) -> bool:
    """Whether the stored NetworkPolicies let `pod` open TCP `ip:port`, judged as a CNI would judge their
    ipBlock rules (the API server itself says which policies select the pod)."""
    policies = [
        p["spec"]
        for p in admin.items(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies")
        if "Egress" in p["spec"].get("policyTypes", [])
        and pod in selected_pods(admin, ns, p["spec"]["podSelector"])
    ]
    address = ipaddress.ip_address(ip)
    for spec in policies:
        for rule in spec.get("egress") or []:
            ports = rule.get("ports")
            if ports and not any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") in (None, port) for p in ports
            ):
                continue
            if not rule.get("to"):
                return True
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if (
                    block
                    and address in ipaddress.ip_network(block["cidr"])
                    and not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
                ):
                    return True
    return not policies


# -- the test ------------------------------------------------------------------------------------------------
def test_workers_reach_s3_with_pod_identity_credentials_scoped_by_the_program_policy(
    kube: ControlPlane, kubelet_factory: Callable[..., Kubelet], tmp_path: Path, record_property
) -> None:
    s3_python()
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - started, 1)

    objs: StackObjects = record_stack("dev", with_data("dev", dataBuckets=BUCKETS))
    mark("stack recorded")
    ns, region = objs.namespace, stack_value("dev", "aws:region")
    [association] = objs.graph.of_type(ASSOCIATION)
    [role] = [r for r in objs.graph.of_type(ROLE) if r.state.get("arn") == association.inputs["roleArn"]]
    [policy] = ours(objs.graph, ROLE_POLICY)
    worker_dep = objs.find("Deployment", WORKER)
    program = copy.deepcopy(worker_dep["spec"]["template"])
    assert association.inputs["namespace"] == ns
    assert association.inputs["serviceAccount"] == program["spec"]["serviceAccountName"]

    admin = kube.rest()
    if admin.get_or_none(f"/api/v1/namespaces/{ns}"):  # a previous test of this session used it
        kube.delete_namespace(ns)
        wait_for(lambda: admin.get_or_none(f"/api/v1/namespaces/{ns}") is None, 60, message=f"{ns} gone")

    # The input, an object outside the read prefix, and one already in the results bucket (it must stay).
    objects = {INPUT: b"t2m\n271.5\n280.25\n290.0\n", ELSEWHERE: b"t2m\n0\n", ("team-results", "README"): b""}
    with moto_server(tmp_path) as endpoint:
        trust, document = role.inputs["assumeRolePolicy"], policy.inputs["policy"]
        aws = in_s3_venv(s3_prepare, endpoint, region, trust, document, objects)
        mark("moto up, fixtures made, IAM enforcement on")
        with PodIdentityAgent(admin, ns, association.inputs["serviceAccount"], aws["credentials"]) as agent:
            env = [
                {"name": "AWS_DEFAULT_REGION", "value": region},
                {"name": "AWS_REGION", "value": region},
                {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": agent.url},  # EKS: AGENT_ADDRESS
                {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": f"{TOKEN_MOUNT}/{TOKEN_VOLUME}"},
                {"name": STAND_IN, "value": endpoint},
            ]
            worker_dep["spec"]["template"] = pod_identity_mutation(program, env)
            # The associated ServiceAccount's pods (the workers) run from .venv-s3, the others from .venv.
            associated = association.inputs["serviceAccount"]
            k = kubelet_factory(
                nodes_for(objs), namespaces=[ns], probe_period_scale=0.2,
                venv_bin=lambda pod: S3_VENV_BIN if pod["spec"]["serviceAccountName"] == associated else None,
            )  # fmt: skip
            try:
                apply(admin, objs.objects, objs.patches)
                result = _run_on_worker(kube, k, ns)
                mark("task done on the worker")
                _check(admin, k, ns, program, env, agent, result, aws)
                written = in_s3_venv(
                    s3_objects, endpoint, region, aws["admin"], sorted({b for b, _ in objects})
                )
            finally:
                kube.delete_namespace(ns)
    mark("done")
    # The data: the result under runs/, nothing written elsewhere, the input untouched.
    assert written == {**{f"{b}/{key}": body for (b, key), body in objects.items()},
                       "/".join(OUTPUT): result["mean"].encode()}, written  # fmt: skip
    assert result["mean"] == "280.58\n"
    for what, value in timings.items():
        record_property(f"seconds: {what}", value)
    record_property("agent requests", [(r.status, r.subject, r.pod) for r in agent.requests])
    record_property("worker", {k: result[k] for k in ("method", "earlier", "botocore", "python", "refused")})


def _run_on_worker(kube: ControlPlane, k: Kubelet, ns: str) -> dict[str, Any]:
    """Submit the S3 task through the program's mutual TLS, then ask for one worker with the scheduler's own
    token (what the preload does for a waiting task; this test does not depend on the preload's decisions,
    which tests/dask_adaptive cover)."""
    from distributed import Client

    admin = kube.rest()
    labels = admin.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{SCHEDULER}")["spec"]["selector"]
    selector = ",".join(f"{a}={b}" for a, b in labels["matchLabels"].items())

    def scheduler_pod() -> str | None:
        pods = admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
        return pods[0]["metadata"]["name"] if len(pods) == 1 and pod_ready(pods[0]) else None

    scheduler = wait_for(scheduler_pod, 120, message=lambda: f"the scheduler pod Ready; {k.log_tails(30)}")
    address = k.service_address(ns, SCHEDULER, 8786)
    with Client(f"tls://{address}", security=client_security(kube, ns), timeout=30) as client:
        future = client.submit(worker_task(), INPUT, OUTPUT, REFUSED, pure=False)
        token = (k.runner(ns, scheduler).sa_dir / "token").read_text()
        scale = f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKER}/scale"
        kube.rest(token=token).patch(scale, {"spec": {"replicas": 1}})
        try:
            result = future.result(timeout=120)
        except TimeoutError as exc:
            raise AssertionError(f"the S3 task did not finish; kubelet: {k.log_tails(40)}") from exc
    assert "error" not in result, f"the S3 task failed on the worker:\n{result['error']}"
    return result


def _check(
    admin: Rest,
    k: Kubelet,
    ns: str,
    program: dict[str, Any],
    env: list[dict[str, str]],
    agent: PodIdentityAgent,
    result: dict[str, Any],
    aws: dict[str, Any],
) -> None:
    pod_name = result["worker"]
    [runner] = [r for r in k.all_runners() if r.namespace == ns and r.name == pod_name]
    pod = admin.get(f"/api/v1/namespaces/{ns}/pods/{pod_name}")

    # 1. The pod is the program's template plus exactly the webhook's additions (and the S3 stand-in).
    [ours_c], [theirs] = pod["spec"]["containers"], program["spec"]["containers"]
    assert undefaulted(ours_c["env"]) == theirs["env"] + env
    assert [e["name"] for e in env] == [*INJECTED, STAND_IN]
    assert ours_c["command"] == theirs["command"] and ours_c.get("args") == theirs.get("args")
    assert [v["name"] for v in pod["spec"]["volumes"]] == [TOKEN_VOLUME] + [
        v["name"] for v in program["spec"]["volumes"]
    ]
    assert [m["mountPath"] for m in ours_c["volumeMounts"]] == [
        m["mountPath"] for m in theirs["volumeMounts"]
    ] + [TOKEN_MOUNT]
    process_env = runner.container(theirs["name"]).env
    assert {e["name"] for e in theirs["env"]} <= set(process_env), "the program's env reached the process"

    # 2. The SDK's chain: the container provider, and nothing before it found credentials.
    assert result["python"].startswith(str(S3_VENV_BIN.parent)), result["python"]
    assert result["method"] == "container-role", result
    assert result["access_key"] == aws["credentials"]["AccessKeyId"]
    assert "env" in result["earlier"] and "shared-credentials-file" in result["earlier"], result["earlier"]
    assert not any(result["earlier"].values()), result["earlier"]
    assert set(result["aws_env"]) == {*INJECTED, STAND_IN}, result["aws_env"]  # no AWS_ACCESS_KEY_ID & co.
    assert result["home"] == str(runner.files.volume_dirs["tmp"]) and result["aws_dir"] is False
    assert (result["endpoint"], result["region"]) == (env[-1]["value"], env[0]["value"])

    # 3. The agent saw the pod's own projected token, as the associated ServiceAccount, bound to this pod.
    token = (runner.files.volume_dirs[TOKEN_VOLUME] / TOKEN_VOLUME).read_text()
    assert result["aws_env"]["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == str(
        runner.files.volume_dirs[TOKEN_VOLUME] / TOKEN_VOLUME
    )
    served = [r for r in agent.requests if r.status == 200]
    assert served and all(r.token == token and r.pod == pod_name for r in served), agent.requests
    assert all(r.subject == agent.subject for r in served)
    # ... and refuses anything else: no token, garbage, another ServiceAccount's real token (the scheduler's).
    scheduler = next(r for r in k.all_runners() if r.namespace == ns and r.name.startswith(SCHEDULER))
    for wrong in (None, "not-a-token", scheduler.token):
        assert get_status(agent.url, wrong) == 403, wrong
    assert [r.status for r in agent.requests[-3:]] == [403, 403, 403]
    assert agent.requests[-1].subject == f"system:serviceaccount:{ns}:{SCHEDULER}"

    # 4. The program's policy scopes the role: moto refused what it does not allow.
    assert result["refused"] == {f"{op} {b}/{key}": "AccessDenied" for op, b, key in REFUSED}, result[
        "refused"
    ]

    # 5. The workers' stored egress fence lets them reach the agent's address, not IMDS.
    assert egress_allowed(admin, ns, pod_name, AGENT_ADDRESS.split("/")[2], 80)
    assert egress_allowed(admin, ns, pod_name, "52.216.0.1", 443)  # a public address, as S3's are
    assert not egress_allowed(admin, ns, pod_name, IMDS, 80)
