"""Kubernetes objects against the Kubernetes OpenAPI schema (kubernetes-validate), in strict mode.

`schema_errors(manifest, version)` is used by the component and program tests on the objects the program
actually registered. Strict mode: an unknown field (a typo such as `nodeSelecter`) is an error, not ignored.
"""

from __future__ import annotations

import kubernetes_validate


def wire_to_json(value: object) -> object:
    """Mock inputs carry numbers as doubles (the engine's wire form); JSON integers are what kubectl sends."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: wire_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire_to_json(v) for v in value]
    return value


def schema_errors(manifest: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(wire_to_json(manifest), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}: {where}: {exc.message}"]
    return []
