"""pytest plugin: the real Kubernetes control plane (`kube`), per-test namespaces, the kubelet harness
and the fault-injection proxy, as fixtures. Registered for the whole suite via `-p testbed.kube.plugin`.

Why a plugin rather than a conftest: tests/dask_adaptive/test_kube_*.py use the same fixtures, and the
control plane must be started at most once per session whichever folder asks first.
See tests/kube/README.md for the API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.kube.control_plane import ControlPlane, find_binaries, wait_for
from testbed.kube.faults import FaultProxy
from testbed.kube.kubelet import ACTIVE, Kubelet
from testbed.kube.nodes import NodeGroup, NodeSpec

__all__ = ["ControlPlane", "FaultProxy", "Kubelet", "NodeGroup", "NodeSpec", "wait_for"]

_STATE: dict[str, Any] = {}
KUBE_FIXTURES = {"kube", "namespace", "kubelet", "kubelet_factory", "fault_proxy"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kubelet_nodes(*specs): NodeSpecs for the `kubelet` fixture (default: one system + one worker node)",
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's control plane (started on first use, stopped at session end)."""
    if "broken" in _STATE:  # the start failed once this session: every later user fails the same way
        pytest.fail(_STATE["broken"], pytrace=False)
    bin_dir, why = find_binaries()
    if bin_dir is None:
        if _in_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    cp = ControlPlane(bin_dir=bin_dir, workdir=tmp_path_factory.mktemp("kube"))
    _STATE["cp"] = cp
    try:
        cp.start()
    except Exception as exc:
        cp.stop()
        _STATE["broken"] = f"control plane failed to start: {exc}"
        pytest.fail(_STATE["broken"], pytrace=False)
    try:
        yield cp
    finally:
        for k in list(ACTIVE):
            k.stop()
        cp.stop()


@pytest.fixture
def namespace(kube: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (workloads first) afterwards."""
    with kube.namespace(request.node.name[:30]) as ns:
        yield ns


def _default_nodes() -> list[NodeSpec]:
    import uuid

    tag = uuid.uuid4().hex[:5]
    return [
        NodeSpec.pool(f"system-{tag}", "system", cpu="4", memory="16Gi"),
        NodeSpec.pool(f"workers-{tag}", "workers", worker=True, cpu="8", memory="32Gi"),
    ]


@pytest.fixture
def kubelet_factory(kube: ControlPlane, namespace: str) -> Iterator[Callable[..., Kubelet]]:
    """Build and start Kubelets (default namespaces=[namespace]); all are stopped after the test."""
    made: list[Kubelet] = []

    def make(nodes: list[NodeSpec] | None = None, **kw: Any) -> Kubelet:
        kw.setdefault("namespaces", [namespace])
        k = Kubelet(kube, _default_nodes() if nodes is None else nodes, **kw)
        made.append(k)
        return k.start()

    yield make
    leaked: list[int] = []
    for k in made:
        k.stop()
        leaked += k.leaked_process_groups()
    # Every test checks the harness left nothing running (a leak would disturb the next test).
    assert not leaked, f"kubelet harness leaked process groups {leaked}"


@pytest.fixture
def kubelet(kubelet_factory: Callable[..., Kubelet], request: pytest.FixtureRequest) -> Kubelet:
    """A started Kubelet for the test's namespace.

    Nodes: `@pytest.mark.kubelet_nodes(NodeSpec(...), ...)`, or indirect parametrisation with a list
    of NodeSpecs; default one node of group "system" and one tainted node of group "workers".
    """
    marker = request.node.get_closest_marker("kubelet_nodes")
    nodes = list(marker.args) if marker else getattr(request, "param", None)
    return kubelet_factory(nodes)


@pytest.fixture
def fault_proxy(kube: ControlPlane) -> Iterator[FaultProxy]:
    """A started fault-injection proxy in front of the apiserver (TLS signed by the cluster CA)."""
    proxy = FaultProxy(kube.url, kube.ca_file, kube.ca_key_file, workdir=kube.workdir / "proxy")
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure of a test that used the cluster, attach the tails of the control-plane and pod logs."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not (KUBE_FIXTURES & set(getattr(item, "fixturenames", ()))):
        return
    cp: ControlPlane | None = _STATE.get("cp")
    if cp is not None:
        for name, text in cp.log_tails(15).items():
            report.sections.append((f"{name} log tail ({cp.logs_dir})", text))
    for k in ACTIVE:
        for name, text in k.log_tails(20).items():
            report.sections.append((f"pod {name} log tail", text))
        if k.errors:
            report.sections.append(("kubelet sync errors", "\n".join(k.errors[-10:])))


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
