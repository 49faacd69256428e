"""Kubernetes versions this toolkit supports, and the cluster-autoscaler release for each minor."""

from __future__ import annotations

import re

# EKS minor versions this toolkit is tested against (standard or extended support at the time of writing).
SUPPORTED_KUBERNETES_VERSIONS = ("1.33", "1.34", "1.35")

# Kubernetes minor -> cluster-autoscaler release. CA's minor must equal the cluster's minor ("versioning
# scheme was changed to match Kubernetes minor releases exactly", CA README); the patch is the newest one
# published on kubernetes/autoscaler releases when this table was last updated.
CA_IMAGE_TAGS: dict[str, str] = {
    "1.30": "v1.30.5",
    "1.31": "v1.31.5",
    "1.32": "v1.32.7",
    "1.33": "v1.33.6",
    "1.34": "v1.34.5",
    "1.35": "v1.35.2",
    "1.36": "v1.36.1",
}

_MINOR = re.compile(r"^v?(?P<major>[0-9]+)\.(?P<minor>[0-9]+)(\.[0-9]+)?$")


def kubernetes_minor(version: str) -> str:
    """'1.33' / '1.33.2' / 'v1.33' -> '1.33'."""
    match = _MINOR.match(str(version).strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return f"{int(match['major'])}.{int(match['minor'])}"


def image_tag_for(kubernetes_version: str) -> str:
    """CA image tag for the cluster's minor; KeyError for a minor the table does not know."""
    return CA_IMAGE_TAGS[kubernetes_minor(kubernetes_version)]
