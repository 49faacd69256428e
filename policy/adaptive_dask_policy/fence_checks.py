"""The checks of the Dask namespace's fences (issue 12): default-deny NetworkPolicy where Dask runs,
vpc-cni enforcing NetworkPolicies, and the scheduler's admission policy (failing closed, with
validations) bound with Deny."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource

from .checks import is_dask_worker_deployment
from .props import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    DEPLOYMENT,
    NETWORK_POLICY,
    as_list,
    get_path,
    labels_of,
)


def _namespace(props: Mapping[str, Any]) -> str:
    return str(get_path(props, "metadata.namespace", "default"))


def _dask_deployments(
    resources: Sequence[PolicyResource], component: str | None = None
) -> list[PolicyResource]:
    out = []
    for r in resources:
        if r.resource_type != DEPLOYMENT:
            continue
        labels = labels_of(r.props)
        is_dask = labels.get("app.kubernetes.io/name") == "dask" or is_dask_worker_deployment(r.props)
        if is_dask and (component is None or labels.get("app.kubernetes.io/component") == component):
            out.append(r)
    return out


def is_default_deny(props: Mapping[str, Any]) -> bool:
    """Selects every pod, governs Ingress, allows nothing."""
    selector = get_path(props, "spec.podSelector") or {}
    return (
        not get_path(selector, "matchLabels")
        and not get_path(selector, "matchExpressions")
        and "Ingress" in as_list(get_path(props, "spec.policyTypes"))
        and not as_list(get_path(props, "spec.ingress"))
    )


def check_dask_default_deny(resources: Sequence[PolicyResource]) -> list[tuple[str | None, str]]:
    """A connection to the scheduler runs code in it: every namespace with Dask pods denies ingress by
    default, so only the NetworkPolicies that name peers let anything in."""
    denied = {
        _namespace(r.props)
        for r in resources
        if r.resource_type == NETWORK_POLICY and is_default_deny(r.props)
    }
    return [
        (
            d.urn,
            f"namespace {_namespace(d.props)!r} runs Dask pods but has no default-deny ingress NetworkPolicy",
        )
        for d in _dask_deployments(resources)
        if _namespace(d.props) not in denied
    ]


def check_vpc_cni_network_policy(props: Mapping[str, Any]) -> list[str]:
    """Without `enableNetworkPolicy`, the EKS vpc-cni addon stores NetworkPolicies and enforces none."""
    if props.get("addonName") != "vpc-cni":
        return []
    try:
        values = json.loads(props.get("configurationValues") or "{}")
    except (TypeError, ValueError):
        return ["vpc-cni configurationValues is not JSON"]
    if str(values.get("enableNetworkPolicy", "")).lower() != "true":
        return [
            'vpc-cni must set configurationValues {"enableNetworkPolicy": "true"}: nothing enforces policies'
        ]
    return []


def admission_policy_defects(props: Mapping[str, Any]) -> list[str]:
    """Why a ValidatingAdmissionPolicy would refuse nothing, whatever it is bound with.

    `failurePolicy: Ignore` admits every request whose evaluation fails (a CEL error, a cost limit, a
    missing param), so the fence opens exactly when it is probed; unset is the API server's default,
    Fail. A policy without a validation (or whose only expressions are the constant `true`) never denies."""
    out = []
    failure = get_path(props, "spec.failurePolicy")
    if failure is not None and str(failure) != "Fail":
        out.append(f"spec.failurePolicy is {str(failure)!r}; it must be 'Fail' (or unset: the API default)")
    checks = [
        v
        for v in as_list(get_path(props, "spec.validations"))
        if isinstance(v, Mapping) and str(v.get("expression", "")).strip() not in ("", "true")
    ]
    if not checks:
        out.append("spec.validations has no expression that can fail, so the policy denies nothing")
    return out


def check_scheduler_admission(resources: Sequence[PolicyResource]) -> list[tuple[str | None, str]]:
    """The scheduler holds a token that can scale and delete pods; a ValidatingAdmissionPolicy matched on
    exactly its service account, failing closed, with validations, and bound with Deny narrows that to
    scaling.

    Every policy whose matchConditions name the account must be such a fence and every binding of one
    must Deny, and at least one complete fence must exist; other admission policies (e.g. one guarding
    a PriorityClass) are not looked at, so the check holds for any number of them."""
    policies = [r for r in resources if r.resource_type == ADMISSION_POLICY]
    bindings = [r for r in resources if r.resource_type == ADMISSION_BINDING]
    found: list[tuple[str | None, str]] = []
    for scheduler in _dask_deployments(resources, "scheduler"):
        account = get_path(scheduler.props, "spec.template.spec.serviceAccountName", "default")
        user = f"system:serviceaccount:{_namespace(scheduler.props)}:{account}"
        matching = [
            p
            for p in policies
            if any(
                user in str(c.get("expression", ""))
                for c in as_list(get_path(p.props, "spec.matchConditions"))
            )
        ]
        fenced = False
        for policy in matching:
            name = str(get_path(policy.props, "metadata.name"))
            defects = admission_policy_defects(policy.props)
            found += [(policy.urn, f"the scheduler's admission policy {name}: {d} ({user})") for d in defects]
            denies = False
            for binding in bindings:
                if str(get_path(binding.props, "spec.policyName")) != name:
                    continue
                if "Deny" in as_list(get_path(binding.props, "spec.validationActions")):
                    denies = True
                else:
                    found.append(
                        (binding.urn, f"the scheduler's admission policy binding must Deny ({user})")
                    )
            fenced = fenced or (denies and not defects)
        if not fenced:
            found.append(
                (
                    scheduler.urn,
                    f"no ValidatingAdmissionPolicy fences the scheduler's account {user}: none matches it, "
                    "fails closed, has validations and is bound with Deny",
                )
            )
    return found


def check_dask_mutual_tls(props: Mapping[str, Any]) -> list[str]:
    """A Dask pod that accepts or makes plaintext connections lets anyone who reaches it run code: every
    container of a Dask Deployment requires encryption with a CA, and the scheduler listens on tls://."""
    labels = labels_of(props)
    if labels.get("app.kubernetes.io/name") != "dask" and not is_dask_worker_deployment(props):
        return []
    if labels.get("app.kubernetes.io/component", "worker") not in ("scheduler", "worker"):
        return []  # e.g. headroom placeholders: pause containers, no Dask connection at all
    found = []
    for container in as_list(get_path(props, "spec.template.spec.containers")):
        name = container.get("name", "?")
        env = {e.get("name"): str(e.get("value", "")) for e in as_list(container.get("env"))}
        if env.get("DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION", "").lower() != "true":
            found.append(f"container {name!r} must set DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True")
        if not env.get("DASK_DISTRIBUTED__COMM__TLS__CA_FILE"):
            found.append(
                f"container {name!r} must name the stack's CA (DASK_DISTRIBUTED__COMM__TLS__CA_FILE)"
            )
        command = [str(a) for a in as_list(container.get("command")) + as_list(container.get("args"))]
        if "scheduler" in command[:2]:
            listens_tls = (
                any(
                    a == "--protocol" and i + 1 < len(command) and command[i + 1] == "tls"
                    for i, a in enumerate(command)
                )
                or "--protocol=tls" in command
            )
            if not listens_tls:
                found.append(f"container {name!r}: the scheduler must listen with --protocol tls")
        if any(a.startswith("tcp://") for a in command):
            found.append(f"container {name!r} connects over plaintext tcp://")
    return found
