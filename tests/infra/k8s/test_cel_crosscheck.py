"""testbed/infra/cel_crosscheck.py: the shipped policies' CEL read alike by cel-python and cel-expr-python.

Here on hand-built requests (fast, no cluster); tests/kube/test_admission_real.py runs the same check on
every AdmissionReview a real 1.20 API server sends.
"""

from __future__ import annotations

import copy

import pytest

from infra.k8s import admission
from testbed.infra import admission_review as ar
from testbed.infra.cel_crosscheck import COMPILE_ERROR, ERROR, disagreements, evaluate_both, expressions

POLICY = admission.admission_policy(ar.SETTINGS, ar.NAMES)
PRIORITY = admission.priority_class_policy(ar.SETTINGS, ar.NAMES)
GRACE = ar.SETTINGS.termination_grace_seconds


def deleting(pod: dict, grace: int) -> dict:
    req = ar.request("DELETE", "pods", pod["metadata"]["name"])
    req["options"]["gracePeriodSeconds"] = grace
    return {**req, "object": None, "oldObject": pod}


def updating(old: dict, change) -> dict:
    return {
        **ar.request("UPDATE", "pods", old["metadata"]["name"]),
        "object": ar.patched(old, change),
        "oldObject": old,
    }


def new_image(pod: dict) -> None:
    pod["spec"]["containers"][0]["image"] = "evil:latest"


def cost(pod: dict) -> None:
    pod["metadata"]["annotations"][admission.DELETION_COST] = "-100"


def event(count: int) -> dict:
    about = {"apiVersion": "apps/v1", "kind": "Deployment", "name": ar.NAMES.worker, "namespace": ar.NS}
    meta = {"name": f"{ar.NAMES.worker}.1", "namespace": ar.NS}
    return {"apiVersion": "v1", "kind": "Event", "metadata": meta, "involvedObject": about, "count": count}


SCHEDULER = ar.pod("scheduler", f"{ar.NAMES.scheduler}-{ar.HASH}-q1w2e")
SCALE = ar.request("UPDATE", "deployments", ar.NAMES.worker, group="apps", kind="Scale", sub="scale")
CASES = {  # request -> (failed validation indexes expected by both)
    "force-delete a worker": (deleting(ar.WORKER, 0), {"gracePeriodSeconds below"}),
    "delete with the grace": (deleting(ar.WORKER, GRACE), set()),
    "delete the scheduler": (deleting(SCHEDULER, GRACE), {"only touch the worker pods"}),
    "patch an image": (updating(ar.WORKER, new_image), {"change nothing on a pod"}),
    "patch the deletion cost": (updating(ar.WORKER, cost), set()),
    "scale above the maximum": (
        {
            **SCALE,
            "object": ar.scale(ar.NAMES.worker, ar.SETTINGS.max_workers + 1),
            "oldObject": ar.scale(ar.NAMES.worker, 1),
        },
        {"more than"},
    ),
    # no spec on an Event: every variable must still be total (cel-python once read a missing spec as equal)
    "bump an Event's count": (
        {
            **ar.request("UPDATE", "events", f"{ar.NAMES.worker}.1", kind="Event"),
            "object": event(2),
            "oldObject": event(1),
        },
        set(),
    ),
    "another user's delete": (
        {**deleting(ar.WORKER, 0), "userInfo": ar.user("admin")},
        {"gracePeriodSeconds below"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_implementations_agree_on_every_expression(case):
    sent, failing = CASES[case]
    outcomes = evaluate_both(POLICY, sent)
    assert [o.label for o in outcomes] == [label for label, _ in expressions(POLICY)]
    assert [o for o in outcomes if not o.agree] == []
    messages = [v["message"] for v in POLICY["spec"]["validations"]]
    failed = {
        messages[int(o.label[12:-1])]
        for o in outcomes
        if o.label.startswith("validations[") and o.google is False
    }
    assert {f for f in failing if any(f in m for m in failed)} == failing and len(failed) == len(failing), (
        failed
    )
    assert all(o.celpy not in (ERROR, COMPILE_ERROR) for o in outcomes)  # every expression total here


def test_the_priority_policy_too():
    pod = copy.deepcopy(ar.WORKER)
    pod["spec"]["priorityClassName"] = ar.NAMES.scheduler_priority_class
    sent = {
        **ar.request("CREATE", "pods", "p", namespace="elsewhere", username="admin"),
        "object": pod,
        "oldObject": None,
    }
    (outcome,) = evaluate_both(PRIORITY, sent)
    assert (outcome.celpy, outcome.google) == (False, False)


def test_a_difference_between_the_implementations_is_reported():
    """cel-python has no heterogeneous numeric equality (an error); the C++ runtime compares int and double;
    and its type checker refuses a literal int == double at compile time."""
    policy = {"spec": {"validations": [
        {"expression": "request.options.gracePeriodSeconds == 0.0", "message": "m"},
        {"expression": "1 == 1.0", "message": "m"},
        {"expression": "request.options.gracePeriodSeconds == 0", "message": "m"},
    ]}}  # fmt: skip
    assert disagreements(policy, deleting(ar.WORKER, 0)) == [
        f"validations[0]: cel-python {ERROR!r}, cel-expr-python True",
        f"validations[1]: cel-python {ERROR!r}, cel-expr-python {COMPILE_ERROR!r}",
    ]
