"""A checker of the Pod Security Standards `restricted` profile, for the tests of the program's pod
templates: a missing field is found here before a cluster with `enforce: restricted` refuses the pods.
Test-only, so it lives with the tests (the program ships the namespace labels, infra/k8s/guards.py).
Written by hand: the rules are Kubernetes' (pod-security-admission), and no Python package ships them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The Pod Security Standards `restricted` profile (which includes `baseline`), as of Kubernetes 1.33.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (f"{kind}[{c.get('name', i)}]", c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for i, c in enumerate(spec.get(kind) or [])
    ]


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """Every way `pod_spec` falls short of Pod Security `restricted`; empty when it meets it.

    Used by the tests on the program's own pod templates, so a missing field is found before a cluster
    with `enforce: restricted` refuses the pods.
    """
    problems: list[str] = []
    pod_sc = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"pod: {flag} is true")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl.get('name')} is not in the safe set")
    problems += [f"pod: {p}" for p in _context_problems(pod_sc)]
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod: runAsUser is 0")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_ALLOWED:
        problems.append(f"pod: seccompProfile {pod_seccomp}")
    containers = _containers(pod_spec)
    for where, c in containers:
        sc = c.get("securityContext") or {}
        problems += [f"{where}: {p}" for p in _context_problems(sc)]
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{where}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {sc.get('procMount')}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop lacks ALL")
        added = set(caps.get("add") or []) - ADDABLE_CAPABILITIES
        if added:
            problems.append(f"{where}: capabilities.add {sorted(added)}")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(f"{where}: runAsNonRoot is not true (neither here nor on the pod)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{where}: seccompProfile {seccomp}")
        if seccomp is None and pod_seccomp not in SECCOMP_ALLOWED:
            problems.append(
                f"{where}: no seccompProfile RuntimeDefault/Localhost (neither here nor on the pod)"
            )
    if not containers:
        problems.append("pod: no containers")
    return problems


def _context_problems(sc: Mapping[str, Any]) -> list[str]:
    """Checks shared by pod- and container-level securityContext (baseline: Windows, SELinux, AppArmor)."""
    problems = []
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("windowsOptions.hostProcess is true")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"seLinuxOptions {dict(selinux)}")
    if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        problems.append("appArmorProfile Unconfined")
    return problems
