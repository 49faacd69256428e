"""What a pod of the stack needs to speak mutual TLS: the cluster Secret mounted, distributed's settings.

Kept apart from `tls.py` (which makes the certificates) so the pod builders import no provider code.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config.settings import DaskSettings

MOUNT_PATH = "/etc/dask-tls"
CLUSTER_SECRET = "dask-cluster-tls"
CLIENT_SECRET = "dask-client-tls"
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"  # the keys of a kubernetes.io/tls Secret
ROLLOUT_ANNOTATION = "adaptive-dask/tls-cert-sha256"  # changes when a certificate is replaced


def tls_variables(directory: str, roles: tuple[str, ...]) -> dict[str, str]:
    """distributed's own settings as DASK_* variables (its documented convention): encryption required,
    the CA, and the certificate and key of `directory` (a mounted kubernetes.io/tls Secret) for each of
    `roles` (SCHEDULER, WORKER, CLIENT)."""
    folder = directory.rstrip("/")
    env = {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{folder}/{CA_FILE}",
    }
    for role in roles:
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = f"{folder}/{CERT_FILE}"
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = f"{folder}/{KEY_FILE}"
    return env


def dask_tls_env() -> list[dict]:
    """The cluster certificate for every role a pod plays (a worker is also a client of the scheduler
    and of other workers; the nanny uses the worker's)."""
    variables = tls_variables(MOUNT_PATH, ("SCHEDULER", "WORKER", "CLIENT"))
    return [{"name": name, "value": value} for name, value in variables.items()]


def volume() -> dict:
    """The cluster Secret, readable by the pod's group only (fsGroup), never world-readable."""
    return {"name": "dask-tls", "secret": {"secretName": CLUSTER_SECRET, "defaultMode": 0o440}}


def volume_mount() -> dict:
    return {"name": "dask-tls", "mountPath": MOUNT_PATH, "readOnly": True}


@dataclass(frozen=True)
class TlsPod:
    """What mutual TLS adds to a Dask pod (nothing when the stack runs plaintext)."""

    env: list[dict]
    mounts: list[dict]
    volumes: list[dict]
    annotations: dict


def tls_pod(settings: DaskSettings, rollout: object) -> TlsPod:
    """`rollout` (a str, or a Pulumi Output in the program) changes when a certificate is replaced, so the
    pods restart on the new material (infra/k8s/tls.py)."""
    if not settings.tls:
        return TlsPod([], [], [], {})
    return TlsPod(
        dask_tls_env(),
        [volume_mount()],
        [volume()],
        {ROLLOUT_ANNOTATION: rollout},
    )
