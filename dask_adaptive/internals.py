"""The one place that reaches into distributed's internals: stopping a retirement it started.

distributed has public API to start a retirement (`Scheduler.retire_workers`) but none to stop one. The
scheduler undoes a retirement itself only when it aborts (no recipients for the data): it sends the worker
back its old status. We need the same for a retirement we give up (retire-timeout) or whose worker still
holds the last copy of a key afterwards. tests/dask_adaptive/test_controller.py::
test_the_distributed_internals_we_use_are_still_there fails loudly if any of this changes.
"""

from __future__ import annotations

from typing import Any

from distributed.active_memory_manager import RetireWorker
from distributed.core import Status


def stop_retirement(scheduler: Any, ws: Any, stimulus_id: str) -> bool:
    """Stop moving data off worker `ws` and give it its work back; False if it was not retiring.

    Internal: a running `retire_workers` keeps a `RetireWorker` policy in the Active Memory Manager's
    `policies` set until the data has moved (the policy removes itself then); there is no public way to
    withdraw it, so it is discarded here. Public: the status change on the scheduler
    (`handle_worker_status_change`) and, through `worker_send`, the same "worker-status-change" message
    the scheduler sends a worker whose retirement aborted.
    """
    amm = scheduler.extensions.get("amm")
    if amm is not None:
        for policy in list(amm.policies):
            if isinstance(policy, RetireWorker) and policy.address == ws.address:
                amm.policies.discard(policy)
    if ws.status != Status.closing_gracefully:
        return False
    scheduler.handle_worker_status_change(Status.running, ws, stimulus_id)
    scheduler.worker_send(
        ws.address, {"op": "worker-status-change", "status": Status.running.name, "stimulus_id": stimulus_id}
    )
    return True
