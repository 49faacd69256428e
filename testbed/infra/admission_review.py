"""A small ValidatingAdmissionPolicy evaluator, and admission requests shaped as the apiserver sends them.

- `review(policy, request, object, oldObject)` applies a policy's matchConstraints, matchConditions and
  variables in the apiserver's order, then its validations, with cel-python (an independent CEL
  implementation); `cel`, `is_true` and `rule_matches` are its parts.
- `request`, `user`, `pod`, `patched`, `scale` build the AdmissionRequest and the objects admission sees
  for the Dask layer of `SETTINGS` (`builders.aws_settings()`); `WORKER` is a running worker pod.

The admission tests of tests/infra/k8s/ use both; testbed/kube/admission_webhook.py runs the same evaluator
behind a real apiserver.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes

from infra.k8s import admission
from infra.k8s import dask_objects as kd
from testbed.infra.builders import aws_settings, names_of, templates

# ---------------------------------------------------------------- the evaluator

ENV = celpy.Environment()


def cel(expression: str, activation: dict[str, Any]) -> Any:
    return ENV.program(ENV.compile(expression)).evaluate(activation)


def is_true(value: Any) -> bool:
    """CEL `true` (cel-python's BoolType), not merely a truthy value such as 1 or a non-empty map."""
    return isinstance(value, celtypes.BoolType) and bool(value)


def rule_matches(rule: dict, request: dict) -> bool:
    """A NamedRuleWithOperations against an AdmissionRequest, as the apiserver matches it."""
    gvr = request["resource"]
    sub = request.get("subResource", "")
    wanted = f"{gvr['resource']}/{sub}" if sub else gvr["resource"]
    resource_ok = any(
        r == "*" or r == wanted or (sub and r == f"{gvr['resource']}/*") for r in rule["resources"]
    )
    return (
        resource_ok
        and any(g in ("*", gvr["group"]) for g in rule["apiGroups"])
        and any(v in ("*", gvr["version"]) for v in rule["apiVersions"])
        and any(o in ("*", request["operation"]) for o in rule["operations"])
    )


@dataclass
class Decision:
    matched: bool
    denied: list[str] = field(default_factory=list)  # messages of failed validations
    errors: list[str] = field(default_factory=list)  # evaluation errors (deny too: failurePolicy Fail)

    @property
    def verdict(self) -> str:
        if not self.matched:
            return "unmatched"
        return "denied" if self.denied or self.errors else "allowed"


def review(policy: dict, request: dict, obj: dict | None, old: dict | None) -> Decision:
    spec = policy["spec"]
    if not any(rule_matches(r, request) for r in spec["matchConstraints"]["resourceRules"]):
        return Decision(matched=False)
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
    }
    for condition in spec["matchConditions"]:
        if not is_true(cel(condition["expression"], activation)):
            return Decision(matched=False)
    variables: dict = {}
    for variable in spec["variables"]:
        # The apiserver evaluates variables lazily; here eagerly, so each must be total (no error).
        value = cel(variable["expression"], {**activation, "variables": celtypes.MapType(variables)})
        assert not isinstance(value, celpy.CELEvalError), (variable["name"], value)
        variables[celtypes.StringType(variable["name"])] = value
    activation["variables"] = celtypes.MapType(variables)
    decision = Decision(matched=True)
    for validation in spec["validations"]:
        try:
            ok = cel(validation["expression"], activation)
        except celpy.CELEvalError as exc:
            decision.errors.append(f"{validation['message']}: {exc}")
            continue
        if isinstance(ok, celpy.CELEvalError):
            decision.errors.append(f"{validation['message']}: {ok}")
        elif not is_true(ok):
            decision.denied.append(validation["message"])
    return decision


# ---------------------------------------------------------------- admission requests, as the apiserver sends

SETTINGS = aws_settings()
NAMES = names_of(SETTINGS)
NS = NAMES.namespace
SCHEDULER_USER = f"system:serviceaccount:{NS}:{NAMES.scheduler}"
HASH = "7d9c8b6f5"


def user(username: str) -> dict:
    groups = ["system:authenticated"]
    if username.startswith("system:serviceaccount:"):
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{username.split(':')[2]}", *groups]
    return {"username": username, "uid": "0a1b2c3d", "groups": groups}


OPTIONS = {
    "CREATE": "CreateOptions",
    "UPDATE": "PatchOptions",
    "DELETE": "DeleteOptions",
    "CONNECT": "PodExecOptions",
}


def request(
    operation: str,
    resource: str,
    name: str,
    *,
    group: str = "",
    kind: str = "Pod",
    sub: str = "",
    namespace: str = NS,
    username: str = SCHEDULER_USER,
) -> dict:
    gvr = {"group": group, "version": "v1", "resource": resource}
    gvk = {"group": "autoscaling" if sub == "scale" else group, "version": "v1", "kind": kind}
    req = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "namespace": namespace,
        "operation": operation,
        "userInfo": user(username),
        "dryRun": False,
        "options": {"kind": OPTIONS[operation], "apiVersion": "meta.k8s.io/v1"},
    }
    if name:  # omitempty, like every optional string of an AdmissionRequest
        req["name"] = name
    if sub:
        req["subResource"] = sub
        req["requestSubResource"] = sub
    return req


def pod(component: str, name: str, namespace: str = NS) -> dict:
    """A running pod of the program's template, with what the apiserver and controllers add."""
    template = copy.deepcopy(templates(SETTINGS)[component])
    deployment = NAMES.worker if component == "worker" else NAMES.scheduler
    spec = template["spec"]
    spec.update(
        nodeName="ip-10-0-1-23.ec2.internal",
        restartPolicy="Always",
        dnsPolicy="ClusterFirst",
        schedulerName="default-scheduler",
        enableServiceLinks=True,
        preemptionPolicy="PreemptLowerPriority",
        priority=0,
    )
    spec.setdefault("tolerations", []).append(
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"{deployment}-{HASH}-",
            "namespace": namespace,
            "uid": "c0ffee00-0000-4000-8000-000000000001",
            "resourceVersion": "48213",
            "creationTimestamp": "2026-12-01T20:00:00Z",
            "labels": {**template["metadata"]["labels"], "pod-template-hash": HASH},
            "annotations": dict(template["metadata"]["annotations"]),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{deployment}-{HASH}",
                    "uid": "c0ffee00-0000-4000-8000-0000000000aa",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-12-01T20:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {}}},
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": "10.0.1.57",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def patched(old: dict, change) -> dict:
    """The object the apiserver hands admission after a PATCH: the change, plus managedFields bookkeeping."""
    new = copy.deepcopy(old)
    change(new)
    new["metadata"]["managedFields"].append(
        {
            "manager": "dask-adaptive",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-12-01T20:05:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{admission.DELETION_COST}": {}}}},
        }
    )
    return new


def scale(name: str, replicas: int | None, namespace: str = NS) -> dict:
    spec = {} if not replicas else {"replicas": replicas}  # replicas is omitempty in autoscaling/v1
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "c0ffee00-0000-4000-8000-0000000000bb",
            "resourceVersion": "48300",
            "creationTimestamp": "2026-12-01T19:00:00Z",
        },
        "spec": spec,
        "status": {"replicas": 2, "selector": kd.selector_string(kd.selector_labels(NAMES, "worker"))},
    }


WORKER = pod("worker", f"{NAMES.worker}-{HASH}-x8k2p")
