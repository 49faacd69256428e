"""The workers' data role (infra/aws/data_access.py, issue 22 §1) in a stack's recorded graph: the stack
config that turns it on, its resources, and their type tokens."""

from __future__ import annotations

import json

from testbed.infra.harness import Graph, stack_value

NS = "adaptive-dask"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def with_data(stack: str, **dask: object) -> dict[str, str]:
    """The stack's own dask section plus the data keys (a stack config override replaces the key)."""
    return {f"{NS}:dask": json.dumps({**stack_value(stack, f"{NS}:dask", {}), **dask})}


def ours(g: Graph, typ: str) -> list:
    """Resources of `typ` inside the WorkerDataRole component."""
    return [n for n in g.of_type(typ) if "WorkerDataRole" in n.urn]
