"""The kubernetes backend's pod watch cache on the REAL 1.20.2 apiserver, through the fault proxy.

The program's worker Deployment and the scheduler's Role (exactly the program's rules) are applied; the
backend uses the scheduler's ServiceAccount token and reaches the apiserver through the proxy. The pods
need not run (no kubelet): the real ReplicaSet controller creates them, the test deletes some. After each
fault (a cut stream, 410 as an HTTP answer and as an ERROR event, 500s on the relist) the cache must
come back and agree with a fresh list made by the admin, straight to the apiserver.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dask_adaptive.backends.kubernetes.api import KubeApi
from dask_adaptive.backends.kubernetes.backend import KubernetesBackend
from testbed.dask.kube_driver import apply
from testbed.dask.kube_fixtures import SCHEDULER, WORKERS, dask_layer, write_service_account

pytestmark = pytest.mark.kube


@pytest.fixture
def workers(kube, namespace, fault_proxy, tmp_path):
    """(backend factory, admin Rest, selector): the program's objects applied, 4 worker pods asked for."""
    layer = dask_layer(namespace)
    apply(kube, [*layer.rbac(), *layer.supporting(), layer.worker_deployment()])
    sa = write_service_account(
        tmp_path / "sa", kube.service_account_token(namespace, SCHEDULER), namespace, Path(kube.ca_file)
    )
    admin = kube.rest()
    scale(admin, namespace, 4)

    def make() -> KubernetesBackend:
        api = KubeApi(fault_proxy.url, sa / "token", sa / "ca.crt")
        return KubernetesBackend(
            namespace,
            WORKERS,
            layer.selector,
            api=api,
            not_ready_timeout=5,
            settle_timeout=5,
            poll_interval=0.2,
        )

    return make, admin, layer.selector


def scale(admin, namespace: str, n: int) -> None:
    admin.patch(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{WORKERS}/scale", {"spec": {"replicas": n}}
    )


def truth(admin, namespace: str, selector: str) -> dict[str, str]:
    pods = admin.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)
    return {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in pods}


def cached(backend: KubernetesBackend) -> dict[str, str]:
    assert backend.cache is not None
    return {n: p["metadata"]["resourceVersion"] for n, p in backend.cache.state.pods.items()}


async def agree(backend, admin, namespace, selector, timeout=60.0) -> dict[str, str]:
    """Wait until the cache holds exactly what a fresh list holds (names and versions), stable."""
    deadline = time.monotonic() + timeout
    while True:
        fresh = await asyncio.to_thread(truth, admin, namespace, selector)
        if backend.cache.synced and cached(backend) == fresh:
            return fresh
        assert time.monotonic() < deadline, f"cache {sorted(cached(backend))} != list {sorted(fresh)}"
        await asyncio.sleep(0.3)


async def change(admin, namespace, selector, n: int) -> str:
    """Scale to n and delete one pod at once (the ReplicaSet replaces it); returns the deleted name."""
    await asyncio.to_thread(scale, admin, namespace, n)
    victim = sorted(await asyncio.to_thread(truth, admin, namespace, selector))[0]
    await asyncio.to_thread(
        admin.delete, f"/api/v1/namespaces/{namespace}/pods/{victim}", {"gracePeriodSeconds": 0}
    )
    return victim


def scenario(workers, namespace, fault):
    """Start, agree, inject `fault` while the pods change, agree again; returns (backend, victim)."""
    make, admin, selector = workers

    async def go():
        backend = make()
        await backend.start()
        await agree(backend, admin, namespace, selector)
        relists = backend.cache.relists
        await fault()
        victim = await change(admin, namespace, selector, 6)
        fresh = await agree(backend, admin, namespace, selector)
        obs = await backend.observe()
        await backend.close()
        return backend, relists, victim, fresh, obs

    return asyncio.run(asyncio.wait_for(go(), 150))


def test_a_cut_stream_is_resynced_and_agrees_with_a_fresh_list(kube, namespace, fault_proxy, workers):
    async def cut():
        await asyncio.sleep(0.5)
        assert fault_proxy.cut() >= 1  # the open watch among them

    backend, relists, victim, fresh, obs = scenario(workers, namespace, cut)
    assert backend.cache.relists > relists and backend.cache.failures >= 1
    assert victim not in cached(backend) and len(fresh) == 6
    assert sorted(u.name for u in obs.units) == sorted(fresh)


def test_410_gone_on_the_rewatch_relists(kube, namespace, fault_proxy, workers):
    async def gone():
        fault_proxy.inject(410, method="GET", path=r"watch=", times=1)
        fault_proxy.cut()

    backend, relists, victim, _, _ = scenario(workers, namespace, gone)
    assert fault_proxy.counts["410"] == 1 and backend.cache.relists > relists
    assert victim not in cached(backend)


def test_an_error_event_410_relists(kube, namespace, fault_proxy, workers):
    async def expired():
        fault_proxy.expire_watch(method="GET", path=r"watch=", times=1)
        fault_proxy.cut()

    backend, relists, victim, _, _ = scenario(workers, namespace, expired)
    assert fault_proxy.counts["expire"] == 1 and backend.cache.relists > relists
    assert backend.cache.last_error.startswith("410") and victim not in cached(backend)


def test_500s_on_the_relist_back_off_then_recover(kube, namespace, fault_proxy, workers):
    async def errors():
        # the watch and the relist both fail (the client's own retries included) for a few seconds
        fault_proxy.server_error(500, method="GET", path=r"/pods\?", times=None, duration=4.0)
        fault_proxy.cut()

    backend, relists, victim, _, _ = scenario(workers, namespace, errors)
    assert fault_proxy.counts["500"] >= 2 and backend.cache.failures >= 1
    assert backend.cache.relists > relists and victim not in cached(backend)
