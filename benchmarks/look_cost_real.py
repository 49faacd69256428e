"""look_cost on the real 1.20.2 control plane: N worker pods made by the real ReplicaSet (no kubelet, so
they stay Pending: a Pending pod is smaller than a Running one, the bytes here are a lower bound), the
scheduler's ServiceAccount token and Role (the namespace's ResourceQuota left out: it caps pods at the
stack's maxWorkers), every request through the fault proxy, which counts the
response bytes it relays (as on the wire: the apiserver gzips large lists itself)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Tee
from look_cost import PATIENT

from dask_adaptive.backends.kubernetes.api import KubeApi
from testbed.dask.kube_driver import apply
from testbed.dask.kube_fixtures import SCHEDULER, WORKERS, dask_layer, write_service_account
from testbed.kube.control_plane import ControlPlane, find_binaries, wait_for
from testbed.kube.faults import FaultProxy


def run_real(
    pods: int, idle: float, measure: Callable[..., Any], rows_for: Callable[..., list[list[Any]]], out: Tee
) -> list[list[Any]]:
    bin_dir, why = find_binaries()
    if bin_dir is None:
        out(f"real control plane: skipped ({why})")
        return []
    with tempfile.TemporaryDirectory(prefix="bench-look-") as tmp:
        kube = ControlPlane(bin_dir=bin_dir, workdir=Path(tmp, "kube"))
        try:
            kube.start()
        except RuntimeError as e:  # said in the output, never hidden: the table then lacks its rows
            out(f"real control plane: did not start ({str(e).splitlines()[0]}); no real rows this run")
            return []
        proxy = FaultProxy(kube.url, kube.ca_file, kube.ca_key_file, workdir=Path(tmp, "proxy")).start()
        try:
            ns = kube.create_namespace("look")
            layer = dask_layer(ns)
            # without the namespace's ResourceQuota: it caps pods at the stack's maxWorkers (its worker
            # groups hold 5 here), and a quota plays no part in what a look costs
            supporting = [o for o in layer.supporting() if o[1]["kind"] != "ResourceQuota"]
            apply(kube, [*layer.rbac(), *supporting, layer.worker_deployment()])
            admin = kube.rest()
            t0 = time.monotonic()
            admin.patch(
                f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}/scale", {"spec": {"replicas": pods}}
            )
            path = f"/api/v1/namespaces/{ns}/pods"
            wait_for(
                lambda: len(admin.items(path, labelSelector=layer.selector)) >= pods, 600, 1.0, f"{pods} pods"
            )
            out(f"  real control plane: {pods} pods made by the ReplicaSet in {time.monotonic() - t0:.0f} s")
            sa = write_service_account(
                Path(tmp, "sa"), kube.service_account_token(ns, SCHEDULER), ns, Path(kube.ca_file)
            )
            target = (ns, WORKERS, layer.selector)
            results = {
                mode: asyncio.run(
                    measure(
                        mode, lambda: KubeApi(proxy.url, sa / "token", sa / "ca.crt", policy=PATIENT), target,
                        lambda: proxy.bytes_out, idle,
                    )
                )
                for mode in ("list", "watch")
            }  # fmt: skip
        finally:
            proxy.stop()
            kube.stop()
    return rows_for("real 1.20.2", pods, results)
