"""The whole pack over the real program's mock-recorded graph: clean for every committed stack, and each
rule proven to fire on a deliberately broken copy of the prod graph.

What this cannot show (only `pulumi preview --policy-pack policy` in CI can): the engine's own handling
of unknowns, transforms, and provider-computed defaults.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
from adaptive_dask_policy import RULE_NAMES, is_strict
from adaptive_dask_policy import props as R
from adaptive_dask_policy.checks import is_dask_worker_deployment
from pulumi_policy import EnforcementLevel

from testbed.infra.harness import load_stack_config, run_stack, stack_names
from tests.policy.packrun import Res, by_policy, run_pack

_CACHE: dict[str, list[Res]] = {}


def recorded(stack: str) -> list[Res]:
    """The program's graph for a stack, as the pack sees it (inputs, state, options, dependencies)."""
    if stack not in _CACHE:
        g = run_stack(stack)
        _CACHE[stack] = [
            Res(
                type=n.type,
                name=n.name,
                inputs=n.inputs,
                state=n.state,
                ignore_changes=list(n.ignore_changes),
                parent=n.parent,
                dependencies=list(n.dependencies),
                property_dependencies=dict(n.property_dependencies),
                urn=n.urn,
                custom=n.custom,
            )
            for n in g.nodes
        ]
    return copy.deepcopy(_CACHE[stack])


def strict(stack: str) -> bool:
    _, config, _ = load_stack_config(stack)
    return is_strict(stack, config)


def test_stacks_present():
    assert {"dev", "prod"} <= set(stack_names())
    assert strict("prod") and not strict("dev")


@pytest.mark.parametrize("stack", stack_names())
def test_pack_over_each_stack(stack):
    resources = recorded(stack)
    # the pack must have had the program's Dask layer to look at, in every target
    assert any(r.type == R.DEPLOYMENT and is_dask_worker_deployment(r.inputs) for r in resources)
    found = run_pack(resources, strict=strict(stack))
    mandatory = [v for v in found if v.level == EnforcementLevel.MANDATORY]
    assert mandatory == [], "\n".join(f"{v.policy}: {v.message} ({v.urn})" for v in mandatory)
    if strict(stack):
        assert found == []


def test_dev_is_told_about_its_open_endpoint():
    """dev keeps the API endpoint open on purpose (publicAccessCidrs: []); the pack says so, advisory."""
    found = by_policy(run_pack(recorded("dev"), strict=False))
    (v,) = found["eks-public-endpoint-restricted"]
    assert v.level == EnforcementLevel.ADVISORY and "0.0.0.0/0" in v.message
    assert set(found) == {"eks-public-endpoint-restricted"}


# --- deliberately broken variants of the prod graph -------------------------------------------


def _set(d: dict, path: str, value: object) -> None:
    *head, last = path.split(".")
    for p in head:
        d = d.setdefault(p, {})
    d[last] = value


def _both(r: Res, fn: Callable[[dict], None]) -> None:
    fn(r.inputs)
    fn(r.state)


def _dask_component(r: Res, component: str) -> bool:
    labels = (r.inputs.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component") == component


def _autoscaled(r: Res) -> bool:
    sc = r.inputs.get("scalingConfig") or {}
    return sc.get("minSize") != sc.get("maxSize")


def _unscope_writes(d: dict) -> None:
    """The classic shortcut: the scaling actions on every resource, no tag condition."""
    doc = json.loads(d["policy"])
    for st in doc["Statement"]:
        if "autoscaling:SetDesiredCapacity" in st["Action"]:
            st["Resource"] = "*"
            st.pop("Condition", None)
    d["policy"] = json.dumps(doc)


def _no_encryption(d: dict) -> None:
    d.pop("encryptionConfig", None)


def _expose_scheduler(d: dict) -> None:
    d["spec"]["type"] = "LoadBalancer"
    d["spec"].pop("loadBalancerSourceRanges", None)


def _clear_ignores(r: Res) -> None:
    r.ignore_changes = []


VARIANTS: dict[str, tuple[str, Callable[[Res], bool], Callable[[Res], None]]] = {
    "imdsv2-required": (
        R.LAUNCH_TEMPLATE,
        lambda r: True,
        lambda r: _both(r, lambda d: _set(d, "metadataOptions.httpTokens", "optional")),
    ),
    "node-subnets-private": (
        R.SUBNET,
        lambda r: "private" in r.name,
        lambda r: _both(r, lambda d: d.__setitem__("mapPublicIpOnLaunch", True)),
    ),
    "eks-secrets-encryption": (R.EKS_CLUSTER, lambda r: True, lambda r: _both(r, _no_encryption)),
    "eks-audit-logging": (
        R.EKS_CLUSTER,
        lambda r: True,
        lambda r: _both(r, lambda d: d.__setitem__("enabledClusterLogTypes", ["api"])),
    ),
    "eks-public-endpoint-restricted": (
        R.EKS_CLUSTER,
        lambda r: True,
        lambda r: _both(r, lambda d: _set(d, "vpcConfig.publicAccessCidrs", ["0.0.0.0/0"])),
    ),
    "dask-dashboard-allow-list": (
        R.SERVICE,
        lambda r: _dask_component(r, "scheduler"),
        lambda r: _both(r, _expose_scheduler),
    ),
    "iam-no-unconditioned-write-on-star": (
        "aws:iam/rolePolicy:RolePolicy",
        lambda r: "SetDesiredCapacity" in str(r.inputs.get("policy")),
        lambda r: _both(r, _unscope_writes),
    ),
    "dask-worker-replicas-unmanaged": (
        R.DEPLOYMENT,
        lambda r: _dask_component(r, "worker"),
        _clear_ignores,
    ),
    "nodegroup-desired-size-ignored": (R.NODE_GROUP, _autoscaled, _clear_ignores),
    "cluster-autoscaler-matches-cluster": (
        R.HELM_RELEASE,
        lambda r: r.inputs.get("chart") == "cluster-autoscaler",
        lambda r: _both(r, lambda d: _set(d, "values.image.tag", "v1.34.5")),
    ),
}


def _move_workers(r: Res) -> None:
    _both(r, lambda d: _set(d, "metadata.namespace", "somewhere-else"))


def _plaintext_scheduler(r: Res) -> None:
    """The scheduler as `dask.tls: false` would build it: no --protocol tls."""

    def drop(d: dict) -> None:
        [c] = d["spec"]["template"]["spec"]["containers"]
        i = c["command"].index("--protocol")
        del c["command"][i : i + 2]

    _both(r, drop)


def _fences_scheduler(r: Res) -> bool:
    """The scheduler's admission policy (matched on its service account), not any other the stack has."""
    conditions = json.dumps((r.inputs.get("spec") or {}).get("matchConditions") or [])
    return r.type == R.ADMISSION_POLICY and ":dask-scheduler'" in conditions


def _binds_fence(r: Res) -> bool:
    fences = {p.inputs["metadata"]["name"] for p in recorded("prod") if _fences_scheduler(p)}
    return (r.inputs.get("spec") or {}).get("policyName") in fences


def _audit_only(r: Res) -> None:
    _both(r, lambda d: _set(d, "spec.validationActions", ["Audit"]))


VARIANTS.update(
    {
        # Dask pods in a namespace without the default deny (the policies stay where they were).
        "dask-namespace-default-deny": (R.DEPLOYMENT, lambda r: _dask_component(r, "worker"), _move_workers),
        "vpc-cni-enforces-network-policy": (
            R.ADDON,
            lambda r: r.inputs.get("addonName") == "vpc-cni",
            lambda r: _both(r, lambda d: d.pop("configurationValues", None)),
        ),
        "dask-scheduler-admission-policy": (R.ADMISSION_BINDING, lambda r: _binds_fence(r), _audit_only),
        "imds-hop-limit-one": (
            R.LAUNCH_TEMPLATE,
            lambda r: True,
            lambda r: _both(r, lambda d: _set(d, "metadataOptions.httpPutResponseHopLimit", 2)),
        ),
        "dask-mutual-tls": (R.DEPLOYMENT, lambda r: _dask_component(r, "scheduler"), _plaintext_scheduler),
    }
)


def test_every_rule_has_a_variant():
    assert set(VARIANTS) == set(RULE_NAMES)


@pytest.mark.parametrize("rule", sorted(VARIANTS))
def test_each_rule_fires_on_a_broken_prod_graph(rule):
    typ, pick, breakit = VARIANTS[rule]
    resources = recorded("prod")
    targets = [r for r in resources if r.type == typ and pick(r)]
    assert targets, f"prod graph has no {typ} to break for {rule}"
    breakit(targets[0])
    found = by_policy(run_pack(resources, strict=True))
    assert set(found) == {rule}, {k: [v.message for v in vs] for k, vs in found.items()}
    assert all(v.level == EnforcementLevel.MANDATORY for v in found[rule])
    assert targets[0].urn in {v.urn for v in found[rule]}  # blamed on the broken resource


# --- the scheduler's admission fence, more ways to break it (item 13), for any number of policies ----


def _fail_open(r: Res) -> None:
    _both(r, lambda d: _set(d, "spec.failurePolicy", "Ignore"))


def _no_validations(r: Res) -> None:
    _both(r, lambda d: d["spec"].pop("validations"))


def _always_true(r: Res) -> None:
    _both(r, lambda d: _set(d, "spec.validations", [{"expression": "true", "message": "never"}]))


@pytest.mark.parametrize("breakit", [_fail_open, _no_validations, _always_true])
def test_a_scheduler_fence_that_fails_open_or_validates_nothing_is_no_fence(breakit):
    resources = recorded("prod")
    [fence] = [r for r in resources if _fences_scheduler(r)]
    breakit(fence)
    found = by_policy(run_pack(resources, strict=True))
    rule = "dask-scheduler-admission-policy"
    assert set(found) == {rule}, {k: [v.message for v in vs] for k, vs in found.items()}
    assert fence.urn in {v.urn for v in found[rule]}  # blamed on the policy itself
    [scheduler] = [r for r in resources if r.type == R.DEPLOYMENT and _dask_component(r, "scheduler")]
    assert scheduler.urn in {v.urn for v in found[rule]}, "and the scheduler is reported unfenced"
    assert all(v.level == EnforcementLevel.MANDATORY for v in found[rule])
    relaxed = by_policy(run_pack(resources, strict=False))
    assert {v.level for v in relaxed[rule]} == {EnforcementLevel.ADVISORY}


def _copy_of(r: Res, name: str) -> Res:
    twin = copy.deepcopy(r)
    twin.name, twin.urn = name, r.urn.rsplit("::", 1)[0] + "::" + name
    for d in (twin.inputs, twin.state):
        d["metadata"]["name"] = name
        if "policyName" in d.get("spec", {}):
            d["spec"]["policyName"] = name.removesuffix("-binding")
    return twin


def _fence_pair(resources: list[Res]) -> tuple[Res, Res]:
    [policy] = [r for r in resources if _fences_scheduler(r)]
    [binding] = [r for r in resources if r.type == R.ADMISSION_BINDING and _binds_fence(r)]
    return policy, binding


def test_more_admission_policies_neither_hide_a_broken_fence_nor_break_a_good_one():
    """Another fence-shaped policy (e.g. one guarding the scheduler's PriorityClass) is not the
    scheduler's fence; a second fence on the scheduler's account is checked like the first."""
    resources = recorded("prod")
    policy, binding = _fence_pair(resources)
    other = _copy_of(policy, "priority-class-guard")
    for d in (other.inputs, other.state):  # someone else's policy, matched on other requests
        d["spec"]["matchConditions"] = [{"name": "any", "expression": "true"}]
        d["spec"]["failurePolicy"] = "Ignore"
    resources += [other, _copy_of(binding, "priority-class-guard-binding")]
    assert run_pack(resources, strict=True) == [], "an unrelated policy changes nothing"

    second, second_binding = _copy_of(policy, "second-fence"), _copy_of(binding, "second-fence-binding")
    resources += [second, second_binding]
    assert run_pack(resources, strict=True) == [], "two good fences are fine"

    _fail_open(second)
    found = by_policy(run_pack(resources, strict=True))
    assert set(found) == {"dask-scheduler-admission-policy"}
    assert {v.urn for v in found["dask-scheduler-admission-policy"]} == {second.urn}, (
        "the good fence still fences the scheduler; the broken second one is named"
    )


def test_the_fence_alone_unbound_is_no_fence():
    resources = [r for r in recorded("prod") if not (r.type == R.ADMISSION_BINDING and _binds_fence(r))]
    found = by_policy(run_pack(resources, strict=True))
    assert set(found) == {"dask-scheduler-admission-policy"}
    [v] = found["dask-scheduler-admission-policy"]
    assert "no ValidatingAdmissionPolicy fences the scheduler's account" in v.message
