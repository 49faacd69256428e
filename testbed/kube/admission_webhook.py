"""The program's ValidatingAdmissionPolicies judged on requests a real API server sends.

Why: a 1.20 API server cannot run a ValidatingAdmissionPolicy (VAP, GA in 1.30), and the hand-built
AdmissionRequests of tests/infra are only as faithful as their author. A 1.20 server does call
validating webhooks (admissionregistration.k8s.io/v1) with the real AdmissionReview, so this module
serves each policy as a webhook: a small HTTPS server on 127.0.0.1 (its own CA, made with testbed/pki.py)
that turns every AdmissionReview into the variables a VAP sees and evaluates the policy's CEL with the
same evaluator as the infra tests (`review` of testbed/infra/admission_review.py, cel-python).

Per request, as a VAP does: matchConstraints.resourceRules become the webhook's `rules` (the API server
itself matches group/version/resource/subresource/operation; the evaluator checks the same rules again
and a disagreement denies, so it shows); `request` is the AdmissionRequest without object/oldObject,
which are given as `object`/`oldObject` (null when absent); `params` is absent; matchConditions first (a
false one admits unjudged, an error applies failurePolicy); `variables` in order; every validation; a
failed validation denies with its `message` and `reason`; an evaluation error denies under
failurePolicy Fail. Every review is recorded (`AdmissionWebhook.reviews`) for assertions.

What differs from a 1.30+ API server running the policy natively:
- Unsupported VAP-only fields are refused at registration rather than emulated: `paramKind` (no
  `params`), `matchConstraints.excludeResourceRules`, `resourceNames` in a rule. `messageExpression`,
  `auditAnnotations`, the bindings' `validationActions` (always Deny here), `namespaceObject` and
  `authorizer` are not provided: an expression using the last two errors and so denies.
- Variables are evaluated eagerly and must not error (a VAP evaluates them lazily, so an erroring
  variable no validation reads would not deny there); all validations are evaluated and the first
  failure's message is answered (a VAP also answers with its first failure, in validation order; here
  failed validations come before evaluation errors).
- Denial text: the API server reports `admission webhook "<name>" denied the request: <message>` with
  the code answered (403) instead of `ValidatingAdmissionPolicy '<name>' with binding '<b>' denied
  request: <message>`.
- Webhook-only behaviour: `sideEffects: None` (so dry-run requests are judged, as a VAP judges them), a
  10 s timeout, and a request the server could not deliver (webhook down) fails per failurePolicy.
  The server also sends `uid`, `dryRun` and `options` in `request`; a VAP's `request` has them too.
- Alike: both are called from the same point of the storage layer, after the server's own object
  validation, so one request may be judged more than once (a retry against a fresh read, or a pod's
  two-phase delete), each time with a new uid.
- CEL: cel-python, not cel-go with the Kubernetes libraries; the shipped expressions use the CEL core and
  has() only (tests/infra checks that), so both evaluate them alike. Every expression is also evaluated
  by Google's C++ runtime (cel-expr-python, testbed/infra/cel_crosscheck.py) on every recorded request
  when a test reads `Review.disagreements` (not while the API server waits). Each AdmissionReview
  received is appended to `<workdir>/reviews.jsonl` with its verdict.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import celpy
import pytest

from testbed import pki
from testbed.infra.admission_review import cel, is_true, review, rule_matches
from testbed.infra.cel_crosscheck import disagreements
from testbed.kube.control_plane import ControlPlane, wait_for
from testbed.kube.rest import ApiError, Rest

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
DOMAIN = "vap.adaptive-dask.test"  # webhook names must be fully qualified
TIMEOUT_SECONDS = 10


@dataclass
class Review:
    """One AdmissionReview the API server sent for one policy, and what the webhook answered."""

    policy: str
    request: dict[str, Any]
    matched: bool  # passed the matchConditions (else admitted without judging)
    allowed: bool
    denied: list[str] = field(default_factory=list)  # messages of failed validations
    errors: list[str] = field(default_factory=list)  # evaluation errors
    reason: str = ""  # the status reason answered with a denial
    seconds: float = 0.0  # evaluation time
    judged_by: dict[str, Any] = field(default_factory=dict, repr=False)  # the policy as served

    @cached_property
    def disagreements(self) -> list[str]:
        """cel-python vs cel-expr-python on every expression of the policy, for this request; computed when
        first read, not while the API server waits for the answer (its timeout is 10 s)."""
        return disagreements(self.judged_by, self.request) if self.judged_by else []

    @property
    def verdict(self) -> str:
        if not self.matched:
            return "unmatched"
        return "allowed" if self.allowed else "denied"

    @property
    def message(self) -> str:
        return (self.denied + self.errors + [""])[0]

    @property
    def username(self) -> str:
        return str(self.request.get("userInfo", {}).get("username", ""))

    @property
    def operation(self) -> str:
        return str(self.request["operation"])

    @property
    def resource(self) -> str:
        """`pods`, `deployments/scale`, ... (the request's resource and subresource)."""
        sub = self.request.get("subResource")
        return self.request["resource"]["resource"] + (f"/{sub}" if sub else "")

    @property
    def name(self) -> str:
        return str(self.request.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.request.get("namespace", ""))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.request.get("options") or {})


def check_supported(policy: dict[str, Any]) -> None:
    """Refuse VAP fields this webhook cannot honour, rather than judging differently in silence."""
    spec = policy["spec"]
    constraints = spec.get("matchConstraints") or {}
    unsupported = [
        key
        for key, present in (
            ("spec.paramKind", "paramKind" in spec),
            ("matchConstraints.excludeResourceRules", bool(constraints.get("excludeResourceRules"))),
            (
                "resourceRules[].resourceNames",
                any(r.get("resourceNames") for r in constraints["resourceRules"]),
            ),
        )
        if present
    ]
    if unsupported:
        raise ValueError(f"{policy['metadata']['name']}: not emulated by the webhook: {unsupported}")


def webhook_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy's matchConstraints.resourceRules as webhook RuleWithOperations (the same fields)."""
    keys = ("operations", "apiGroups", "apiVersions", "resources")
    return [
        {**{k: list(rule[k]) for k in keys}, "scope": rule.get("scope", "*")}
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
    ]


def webhook_configuration(policy: dict[str, Any], url: str, ca_pem: str) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1) that sends what the policy
    matches to `url`, failing as the policy fails."""
    spec, name = policy["spec"], policy["metadata"]["name"]
    constraints = spec["matchConstraints"]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": f"{name}.{DOMAIN}",
            "labels": {"tests.kube/emulates": "ValidatingAdmissionPolicy"},
        },
        "webhooks": [
            {
                "name": f"{name}.{DOMAIN}",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem.encode()).decode()},
                "rules": webhook_rules(policy),
                "failurePolicy": spec.get("failurePolicy", "Fail"),
                "matchPolicy": constraints.get("matchPolicy", "Equivalent"),
                "namespaceSelector": constraints.get("namespaceSelector") or {},
                "objectSelector": constraints.get("objectSelector") or {},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": TIMEOUT_SECONDS,
            }
        ],
    }


def judge(policy: dict[str, Any], sent: dict[str, Any]) -> Review:
    """Evaluate `policy` on an AdmissionRequest `sent` by the API server, as a VAP would."""
    t0 = time.monotonic()
    spec, name = policy["spec"], policy["metadata"]["name"]
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    request = {k: v for k, v in sent.items() if k not in ("object", "oldObject")}
    obj, old = sent.get("object"), sent.get("oldObject")

    def done(matched: bool, denied: list[str] | None = None, errors: list[str] | None = None) -> Review:
        denied, errors = denied or [], errors or []
        allowed = not denied and (not errors or not fail_closed)
        reason = next(
            (v.get("reason", "Forbidden") for v in spec["validations"] if v["message"] in denied), ""
        )
        return Review(name, sent, matched, allowed, denied, errors, reason, time.monotonic() - t0, policy)

    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
    }
    # matchConditions first, by hand: `review` would take an erroring condition for a false one.
    for condition in spec.get("matchConditions") or []:
        try:
            value = cel(condition["expression"], activation)
        except celpy.CELEvalError as exc:
            value = exc
        if isinstance(value, celpy.CELEvalError):
            return done(True, errors=[f"matchCondition {condition['name']}: {value}"])
        if not is_true(value):
            return done(False)
    if not any(rule_matches(r, request) for r in spec["matchConstraints"]["resourceRules"]):
        # The API server matched the rules derived from the policy; the evaluator does not: a harness bug.
        return done(True, errors=["the API server sent a request the policy's resourceRules do not match"])
    try:
        decision = review(
            {**policy, "spec": {"matchConditions": [], "variables": [], **spec}}, request, obj, old
        )
    except Exception as exc:  # a variable that errors (asserted total by `review`) or a raised CEL error
        return done(True, errors=[f"evaluation failed: {type(exc).__name__}: {exc}"])
    return done(True, decision.denied, decision.errors)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hook: AdmissionWebhook, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hook = hook
        # Handshakes happen in each handler thread (see _Handler.setup), never in the accept loop.
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.hook.log(f"error serving {client_address}:\n{traceback.format_exc()}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the API server keeps connections alive
    server: _Server

    def setup(self) -> None:
        self.request.do_handshake()
        super().setup()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        path = self.path.split("?", 1)[0]  # the API server appends ?timeout=10s
        data = json.dumps(self.server.hook.answer(path.removeprefix("/validate/"), body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.hook.log(format % args)


class AdmissionWebhook:
    """The HTTPS server and the policies it serves; `register(policy)` makes the API server call it.

    Use as a context manager (or `start()`/`stop()`): stopping first unregisters every policy and waits
    until the API server no longer calls the webhook, since a Fail policy with its server gone would
    refuse every matching request of the session.
    """

    def __init__(self, kube: ControlPlane, workdir: Path) -> None:
        self.kube = kube
        self.admin: Rest = kube.rest()
        self.workdir = workdir
        self.policies: dict[str, dict[str, Any]] = {}
        self._reviews: list[Review] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._probe: dict[str, Callable[[str], None]] = {}
        self._probes = 0
        self.ca_pem = ""

    # ---- server ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def url(self, policy_name: str) -> str:
        return f"https://127.0.0.1:{self.port}/validate/{policy_name}"

    def start(self) -> AdmissionWebhook:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca("adaptive-dask-test-webhook-ca")
        files = pki.write_tls_files(self.workdir / "tls", ca, pki.make_leaf(ca, "admission-webhook"))
        self.ca_pem = ca.cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)
        self._server = _Server(self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admission-webhook", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        try:
            for name in list(self.policies):
                self.unregister(name)
        finally:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
            if self._thread is not None:
                self._thread.join(10)

    def __enter__(self) -> AdmissionWebhook:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, line: str) -> None:
        with self._lock, (self.workdir / "webhook.log").open("a") as fh:
            fh.write(line.rstrip() + "\n")

    # ---- reviews ---------------------------------------------------------------------------------
    def answer(self, policy_name: str, doc: dict[str, Any]) -> dict[str, Any]:
        """The AdmissionReview response for one request."""
        sent = doc["request"]
        policy = self.policies.get(policy_name)
        if doc.get("apiVersion") != "admission.k8s.io/v1" or policy is None:
            result = Review(
                policy_name, sent, True, False, errors=[f"no policy {policy_name} / {doc.get('apiVersion')}"]
            )
        else:
            result = judge(policy, sent)
        with self._lock:
            self._reviews.append(result)
            with (self.workdir / "reviews.jsonl").open("a") as fh:
                fh.write(json.dumps({"policy": policy_name, "verdict": result.verdict, "review": doc}) + "\n")
        response: dict[str, Any] = {"uid": sent["uid"], "allowed": result.allowed}
        if not result.allowed:
            response["status"] = {
                "code": 403,
                "reason": result.reason or "Forbidden",
                "message": result.message,
            }
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def reviews(self, policy: str | None = None, **where: Any) -> list[Review]:
        """Recorded reviews, oldest first; `where` compares Review attributes (name=..., operation=...)."""
        with self._lock:
            found = list(self._reviews)
        return [
            r
            for r in found
            if (policy is None or r.policy == policy) and all(getattr(r, k) == v for k, v in where.items())
        ]

    # ---- registration ----------------------------------------------------------------------------
    def register(self, policy: dict[str, Any], probe: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Serve `policy` and create its ValidatingWebhookConfiguration; return once the API server calls it.

        `probe(name)` must make a request the policy matches about an object called `name`; the default,
        an admin dry-run pod CREATE in namespace `default`, suits policies matching pod creation.
        """
        check_supported(policy)
        name = policy["metadata"]["name"]
        self.policies[name] = policy
        config = webhook_configuration(policy, self.url(name), self.ca_pem)
        self.admin.post(WEBHOOKS, config)
        self._probe[name] = probe or self._dry_run_pod
        # The API server learns of new configurations through an informer: wait until it calls us.
        wait_for(lambda: self._called(name), 30, 0.1, message=f"the API server calling webhook {name}")
        return config

    def unregister(self, name: str) -> None:
        """Delete the configuration and wait until the API server stops calling the webhook for it."""
        self.admin.delete(f"{WEBHOOKS}/{name}.{DOMAIN}")
        try:
            wait_for(
                lambda: not self._called(name), 30, 0.1, message=f"the API server dropping webhook {name}"
            )
        finally:
            self.policies.pop(name, None)
            self._probe.pop(name, None)

    def _called(self, policy_name: str) -> bool:
        """Make the policy's probe request; webhooks are called synchronously, so its review is recorded
        before the API server answers, or never."""
        with self._lock:
            self._probes += 1
            name = f"webhook-probe-{self._probes}"
        with contextlib.suppress(ApiError):  # a policy may well deny the probe: it was called all the same
            self._probe[policy_name](name)
        return bool(self.reviews(policy_name, name=name))

    def _dry_run_pod(self, name: str) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "probe"}], "automountServiceAccountToken": False},
        }
        self.admin.request("POST", "/api/v1/namespaces/default/pods", pod, params={"dryRun": "All"})


@pytest.fixture(scope="module")
def admission_webhook(
    kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdmissionWebhook]:
    """A started webhook server (no policy registered yet); policies are unregistered, then it stops."""
    with AdmissionWebhook(kube, tmp_path_factory.mktemp("admission-webhook")) as hook:
        yield hook
