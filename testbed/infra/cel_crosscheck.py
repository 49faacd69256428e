"""Every CEL expression of a policy evaluated by two independent implementations on one admission request.

cel-python (`celpy`, pure Python: the evaluator of testbed/infra/admission_review.py and of the webhook)
and Google's `cel-expr-python` (the C++ CEL runtime, the same core cel-go follows) are given the same
`request`, `object`, `oldObject` and each its own `variables` (computed in order by that evaluator), and
every matchCondition, variable and validation is evaluated by both, whatever the verdict (so the
expressions a request never reaches under the policy's own order are compared too). Values are compared
as plain JSON-like values; an evaluation error is compared as an error (the text differs between the two).
A disagreement means the shipped CEL is read differently by two implementations: one of them could be
the API server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
from cel_expr_python import cel as google
from celpy import celtypes

ERROR = "<error>"
COMPILE_ERROR = "<compile error>"  # cel-expr-python's type checker refused the expression
_ENV = celpy.Environment()


@dataclass(frozen=True)
class Outcome:
    """One expression on one request: what each implementation returned (ERROR for an error)."""

    label: str  # matchConditions[name], variables.<name> or validations[i]
    celpy: Any
    google: Any

    @property
    def agree(self) -> bool:
        return self.celpy == self.google and type(self.celpy) is type(self.google)


def expressions(policy: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, expression) of every CEL expression in the policy, in the order a VAP evaluates them."""
    spec = policy["spec"]
    return [
        *((f"matchConditions[{c['name']}]", c["expression"]) for c in spec.get("matchConditions") or []),
        *((f"variables.{v['name']}", v["expression"]) for v in spec.get("variables") or []),
        *((f"validations[{i}]", v["expression"]) for i, v in enumerate(spec["validations"])),
    ]


@cache
def _google_env() -> Any:
    dyn = google.Type.DYN
    return google.NewEnv(variables={"request": dyn, "object": dyn, "oldObject": dyn, "variables": dyn})


@cache
def _google_program(expression: str) -> Any:
    return _google_env().compile(expression)


@cache
def _celpy_program(expression: str) -> Any:
    return _ENV.program(_ENV.compile(expression))


def plain(value: Any) -> Any:
    """A cel-python value as plain Python (bool before int: BoolType is not an int here, but be explicit)."""
    if isinstance(value, celpy.CELEvalError):
        return ERROR
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.MapType):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [plain(v) for v in value]
    return value  # None (null)


def _eval_celpy(expression: str, activation: dict[str, Any]) -> Any:
    try:
        return plain(_celpy_program(expression).evaluate(activation))
    except celpy.CELEvalError:
        return ERROR


def _eval_google(expression: str, data: dict[str, Any]) -> Any:
    try:
        program = _google_program(expression)
    except RuntimeError:
        return COMPILE_ERROR
    value = program.eval(data=data)
    return ERROR if value.type() == google.Type.ERROR else value.plain_value()


def evaluate_both(policy: dict[str, Any], sent: dict[str, Any]) -> list[Outcome]:
    """Every expression of `policy` on the AdmissionRequest `sent` (object/oldObject inside it), by both."""
    request = {k: v for k, v in sent.items() if k not in ("object", "oldObject")}
    obj, old = sent.get("object"), sent.get("oldObject")
    py: dict[str, Any] = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
    }
    py_vars: dict[Any, Any] = {}
    g: dict[str, Any] = {"request": request, "object": obj, "oldObject": old, "variables": {}}
    outcomes = []
    for label, expression in expressions(policy):
        py["variables"] = celtypes.MapType(py_vars)
        a, b = _eval_celpy(expression, py), _eval_google(expression, g)
        outcomes.append(Outcome(label, a, b))
        if label.startswith("variables."):
            name = label.removeprefix("variables.")
            py_vars[celtypes.StringType(name)] = celpy.json_to_cel(a) if a != ERROR else celpy.CELEvalError(a)
            g["variables"] = {**g["variables"], name: b} if b != ERROR else g["variables"]
    return outcomes


def disagreements(policy: dict[str, Any], sent: dict[str, Any]) -> list[str]:
    """Human-readable disagreements of the two implementations on one request ([] when they agree)."""
    return [
        f"{o.label}: cel-python {o.celpy!r}, cel-expr-python {o.google!r}"
        for o in evaluate_both(policy, sent)
        if not o.agree
    ]
