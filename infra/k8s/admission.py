"""The scheduler's second fence (plain dicts): a ValidatingAdmissionPolicy + binding that lets the
scheduler's service account change nothing but what scaling needs, whatever its RBAC allows."""

from __future__ import annotations

from collections.abc import Mapping

from infra.config.settings import DaskSettings
from infra.k8s import dask_objects as kd
from infra.k8s.dask_objects import Names

# The preload's only pod write (dask_adaptive/backends/kubernetes/backend.py `_remove` step (a), through
# api.py `annotate_pod`): a merge-patch of this one annotation. Equal to ranking.DELETION_COST (a test
# pins it); not imported, because ranking.py pulls in tornado and infra must not need it.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


# ---------------------------------------------------------------- admission policy (issue 12 §3)
#
# The expressions use only the CEL core and has(): no Kubernetes CEL libraries (no string or list
# extensions), so the independent implementation the tests use (cel-python) evaluates them exactly.
# They never compare an object with null (cel-python has no heterogeneous equality): `request.operation`
# says when object/oldObject exist. Every optional field is guarded with has(), since an absent field is
# an evaluation error, and an error fails closed here (failurePolicy Fail).


def _cel_string(value: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scheduler_username(names: Names) -> str:
    """How the apiserver names requests made with the scheduler pod's service-account token."""
    return f"system:serviceaccount:{names.namespace}:{names.scheduler}"


def admission_policy_name(names: Names) -> str:
    """Cluster-scoped, so per stack (the namespace is per stack)."""
    return f"{names.namespace}-{names.scheduler}-scaling-only"


def _labels_match(var: str, selector: Mapping[str, str]) -> str:
    terms = [f"has({var}.metadata.labels)"]
    for key, value in selector.items():
        k = _cel_string(key)
        terms.append(f"{k} in {var}.metadata.labels && {var}.metadata.labels[{k}] == {_cel_string(value)}")
    return " && ".join(terms)


def _same_field(field: str) -> str:
    """object.metadata.<field> and oldObject.metadata.<field> both absent, or both present and equal."""
    new, old = f"object.metadata.{field}", f"oldObject.metadata.{field}"
    return f"has({new}) == has({old}) && (!has({new}) || {new} == {old})"


def _same_annotations_except(key: str) -> str:
    k = _cel_string(key)
    new, old = "object.metadata.annotations", "oldObject.metadata.annotations"
    kept = f"(!has({new}) || {new}.all(a, a == {k} || (has({old}) && a in {old} && {old}[a] == {new}[a])))"
    gone = f"(!has({old}) || {old}.all(a, a == {k} || (has({new}) && a in {new})))"
    return f"{kept} && {gone}"


def _own_reference(var: str, names: Names) -> str:
    """An ObjectReference (an Event's involvedObject/regarding/related) to one of the stack's own objects:
    the worker or scheduler Deployment, or a pod, of its namespace (every pod there is the stack's)."""
    ns = _cel_string(names.namespace)
    deployments = " || ".join(f"{var}.name == {_cel_string(n)}" for n in (names.worker, names.scheduler))

    def api(version: str) -> str:
        return f"(!has({var}.apiVersion) || {var}.apiVersion == {_cel_string(version)})"

    deployment = f"{var}.kind == 'Deployment' && ({deployments}) && {api('apps/v1')}"
    pod = f"{var}.kind == 'Pod' && {api('v1')}"
    return (
        f"has({var}.namespace) && {var}.namespace == {ns} && has({var}.kind) && has({var}.name) "
        f"&& (({deployment}) || ({pod}))"
    )


def _event_about_own(var: str, names: Names) -> str:
    """Event `var` (core/v1: involvedObject; events.k8s.io/v1: regarding; both: an optional related) is
    about the stack's own objects only."""
    regarding = (
        f"(request.resource.group == 'events.k8s.io' ? "
        f"has({var}.regarding) && {_own_reference(var + '.regarding', names)} : "
        f"has({var}.involvedObject) && {_own_reference(var + '.involvedObject', names)})"
    )
    return f"{regarding} && (!has({var}.related) || {_own_reference(var + '.related', names)})"


def admission_variables(names: Names, worker_grace_seconds: int) -> list[dict[str, str]]:
    """Named sub-expressions; each is total (never an error) for every request the policy matches."""
    ns = _cel_string(names.namespace)
    return [
        {"name": "subresource", "expression": "has(request.subResource) ? request.subResource : ''"},
        {"name": "inNamespace", "expression": f"has(request.namespace) && request.namespace == {ns}"},
        {
            # object/oldObject exist for UPDATE; only oldObject for DELETE
            "name": "oldIsWorker",
            "expression": "(request.operation == 'UPDATE' || request.operation == 'DELETE') && "
            + _labels_match("oldObject", kd.selector_labels(names, "worker")),
        },
        {
            "name": "onlyDeletionCostChanged",
            # spec guarded like the metadata fields: an Event (also matched) has none, and an absent
            # field compared is an error in cel-go and cel-expr-python (cel-python answered true)
            "expression": "request.operation == 'UPDATE' && has(object.spec) == has(oldObject.spec) "
            "&& (!has(object.spec) || object.spec == oldObject.spec) && "
            + " && ".join(_same_field(f) for f in ("labels", "ownerReferences", "finalizers"))
            + " && "
            + _same_annotations_except(DELETION_COST),
        },
        {
            # A DELETE's options reach admission with gracePeriodSeconds filled in: the caller's, else the
            # pod's own; the apiserver itself makes it 0 for a pod never scheduled or already finished,
            # which hold no results, so those stay deletable.
            "name": "gracefulDelete",
            "expression": "request.operation != 'DELETE' || !has(request.options) "
            "|| !has(request.options.gracePeriodSeconds) "
            f"|| request.options.gracePeriodSeconds >= {int(worker_grace_seconds)} "
            "|| !has(oldObject.spec) || !has(oldObject.spec.nodeName) || oldObject.spec.nodeName == '' "
            "|| (has(oldObject.status) && has(oldObject.status.phase) "
            "&& (oldObject.status.phase == 'Succeeded' || oldObject.status.phase == 'Failed'))",
        },
    ]


def admission_validations(settings: DaskSettings, names: Names) -> list[dict[str, str]]:
    """What the scheduler's service account may do; anything else it tries is denied.

    RBAC (`rbac.role_rules`) already limits it to get/list/watch/patch/delete pods and
    get/patch/update the worker Deployment's /scale; this is the second fence, for what RBAC cannot
    express: which pods, which fields, how many replicas. The preload's writes, exactly:
    - PATCH pod: merge-patch of `metadata.annotations[controller.kubernetes.io/pod-deletion-cost]` on
      the worker pods it retires (backend.py `_remove` (a) -> api.py `annotate_pod`). Allowed: that
      annotation added, changed or removed, on this stack's worker pods; spec, labels, other annotations,
      ownerReferences and finalizers unchanged (an image swap, relabelling a pod out of its ReplicaSet,
      orphaning it or a new toleration are all refused). Server-managed metadata (managedFields,
      resourceVersion, generation) is not compared. The value is not restricted: it only orders which
      worker the ReplicaSet removes first, among pods this account may delete outright anyway.
    - DELETE pod: retired worker pods (backend.py `_remove` (b) and `_verify` (d)): this stack's worker
      pods in this namespace only, judged by oldObject's labels.
      A delete with `gracePeriodSeconds` below the workers' termination grace is refused (a force-delete
      kills a worker before it hands its results over), unless the pod never ran (see `gracefulDelete`).
    - UPDATE deployments/scale (a PATCH arrives as UPDATE): the worker Deployment only, with
      spec.replicas <= max_workers (backend.py `scale_up` and `_remove` (c) -> api.py `patch_scale`).
    - CREATE (or PATCH) an Event (backend.py `record` -> ranking.py `build_event`): in its namespace, about
      its own objects only (the worker or scheduler Deployment or a pod there): a stolen token cannot
      forge Events about other workloads for the people and tools that read them.
    No pod CREATE and no pod subresource (exec, attach, portforward, ephemeralcontainers, eviction,
    status, resize, binding); no write to any Deployment itself.
    """
    return [
        *_pod_validations(names),
        *_scale_validations(settings, names),
        _graceful_delete_validation(settings),
        *_event_validations(names),
    ]


IS_PODS = "request.resource.resource == 'pods'"
IS_DEPLOYMENTS = "request.resource.resource == 'deployments'"
IS_EVENTS = "request.resource.resource == 'events'"
IS_SCALE = f"{IS_DEPLOYMENTS} && variables.subresource == 'scale' && request.operation == 'UPDATE'"
WRITES_EVENT = "(request.operation == 'CREATE' || request.operation == 'UPDATE')"


def _deny_unless(expression: str, message: str) -> dict[str, str]:
    return {"expression": expression, "message": message, "reason": "Forbidden"}


def _pod_validations(names: Names) -> list[dict[str, str]]:
    """Patch or delete only, only this stack's worker pods, only the deletion-cost annotation."""
    return [
        _deny_unless(
            f"!({IS_PODS}) || (variables.subresource == '' && "
            "(request.operation == 'UPDATE' || request.operation == 'DELETE'))",
            "the Dask scheduler may only patch or delete pods: no create, no pod subresource",
        ),
        _deny_unless(
            f"!({IS_PODS}) || (variables.inNamespace && variables.oldIsWorker)",
            f"the Dask scheduler may only touch the worker pods of namespace {names.namespace}",
        ),
        _deny_unless(
            f"!({IS_PODS}) || request.operation != 'UPDATE' || variables.onlyDeletionCostChanged",
            f"the Dask scheduler may change nothing on a pod but the {DELETION_COST} annotation",
        ),
    ]


def _graceful_delete_validation(settings: DaskSettings) -> dict[str, str]:
    """No force-delete of a running worker (see the `gracefulDelete` variable)."""
    grace = int(settings.termination_grace_seconds)
    return _deny_unless(
        f"!({IS_PODS}) || variables.gracefulDelete",
        "the Dask scheduler may not delete a running worker pod with gracePeriodSeconds "
        f"below the workers' {grace}s: a force-delete loses the results it holds",
    )


def _scale_validations(settings: DaskSettings, names: Names) -> list[dict[str, str]]:
    """Only the worker Deployment's /scale, and never above max_workers."""
    worker = _cel_string(names.worker)
    return [
        _deny_unless(
            f"!({IS_DEPLOYMENTS}) || ({IS_SCALE} && variables.inNamespace "
            f"&& has(request.name) && request.name == {worker})",
            f"the Dask scheduler may only scale Deployment {names.namespace}/{names.worker}",
        ),
        _deny_unless(
            f"!({IS_SCALE}) || !has(object.spec) || !has(object.spec.replicas) "
            f"|| object.spec.replicas <= {int(settings.max_workers)}",
            f"the Dask scheduler may not ask for more than {settings.max_workers} workers",
        ),
    ]


def _event_validations(names: Names) -> list[dict[str, str]]:
    """Events written in its namespace, about its own objects only."""
    return [
        _deny_unless(
            f"!({IS_EVENTS}) || (variables.inNamespace && {WRITES_EVENT})",
            f"the Dask scheduler may only create or patch Events in namespace {names.namespace}",
        ),
        _deny_unless(
            f"!({IS_EVENTS}) || !{WRITES_EVENT} || ({_event_about_own('object', names)} "
            f"&& (request.operation != 'UPDATE' || {_event_about_own('oldObject', names)}))",
            "the Dask scheduler may only record Events about its own objects (the worker or "
            f"scheduler Deployment, or a pod, of namespace {names.namespace})",
        ),
    ]


def admission_policy(settings: DaskSettings, names: Names) -> dict:
    """ValidatingAdmissionPolicy (v1, GA since 1.30) for requests made by the scheduler's account only.

    Matches every operation on pods and deployments (with their subresources) and events, then narrows to
    the scheduler's username by `matchConditions`, so other users never reach the validations. Fails closed.
    """
    username = _cel_string(scheduler_username(names))
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": admission_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["*"],
                        "operations": ["*"],
                        "resources": ["pods", "pods/*"],
                    },
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["*"],
                        "operations": ["*"],
                        "resources": ["deployments", "deployments/*"],
                    },
                    {
                        "apiGroups": ["", "events.k8s.io"],
                        "apiVersions": ["*"],
                        "operations": ["*"],
                        "resources": ["events"],
                    },
                ]
            },
            "matchConditions": [
                {
                    "name": "scheduler-service-account",
                    "expression": "has(request.userInfo.username) && "
                    f"request.userInfo.username == {username}",
                }
            ],
            "variables": admission_variables(names, settings.termination_grace_seconds),
            "validations": admission_validations(settings, names),
        },
    }


def admission_policy_binding(settings: DaskSettings, names: Names) -> dict:
    """Binds the policy cluster-wide with `Deny` (the matchCondition already scopes it to one account)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": admission_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {"policyName": admission_policy_name(names), "validationActions": ["Deny"]},
    }


# ---------------------------------------------------------------- the scheduler's PriorityClass


def priority_class_policy_name(names: Names) -> str:
    """Cluster-scoped, so per stack."""
    return f"{names.namespace}-{names.scheduler}-priority-class"


def priority_class_policy(settings: DaskSettings, names: Names) -> dict:
    """Only pods of the Dask namespace may use the scheduler's PriorityClass (`guards`' PriorityClass).

    A PriorityClass is cluster-wide and usable by any pod of any namespace: without this, anyone who may
    create a pod anywhere could take priority 100000 and preempt other pods, the Dask workers among them.
    Judges every pod CREATE in the cluster (the class is immutable on a pod), so the expression is total:
    a pod always has a spec. Fails closed.
    """
    pc, ns = _cel_string(names.scheduler_priority_class), _cel_string(names.namespace)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": priority_class_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["pods"]}
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.spec.priorityClassName) "
                    f"|| object.spec.priorityClassName != {pc} "
                    f"|| (has(request.namespace) && request.namespace == {ns})",
                    "message": f"only pods of namespace {names.namespace} may use PriorityClass "
                    f"{names.scheduler_priority_class}",
                    "reason": "Forbidden",
                }
            ],
        },
    }


def priority_class_policy_binding(settings: DaskSettings, names: Names) -> dict:
    """Binds the PriorityClass policy cluster-wide with `Deny`."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": priority_class_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {"policyName": priority_class_policy_name(names), "validationActions": ["Deny"]},
    }
