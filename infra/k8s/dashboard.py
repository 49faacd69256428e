"""The Grafana dashboard of a stack, built in code with grafana-foundation-sdk (a development tool).

`python -m infra.k8s.dashboard > infra/k8s/dashboards/dask-adaptive.json` writes the committed JSON, which
the program ships in a ConfigMap (infra/k8s/monitoring.py) without importing the SDK; a test keeps the two
equal, and another checks every metric a query selects against the /metrics of a live scheduler (with the
preload) and worker. Queries filter on the `namespace` label Prometheus gives every target of the
PodMonitor; `$namespace` picks the stack.
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

UID = "adaptive-dask"
TITLE = "Adaptive Dask"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


def _query(expr: str, legend: str, ref: int) -> prometheus.Dataquery:
    """One PromQL target; `ref` numbers the panel's targets A, B, ... (Grafana keys results by refId)."""
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(chr(ord("A") + ref))
        .datasource(DATASOURCE)
    )


def _series(
    title: str, description: str, unit: str, *queries: tuple[str, str], span: int = 12
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    for ref, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, ref))
    return panel.height(8).span(span)


def _stat(title: str, description: str, unit: str, expr: str, legend: str, span: int = 6) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.with_target(_query(expr, legend, 0)).height(8).span(span)


def build() -> dashboard.Dashboard:
    """Workers, tasks, memory, the preload's decisions, scale-downs, and worker-hours, in that order."""
    adaptive = f"{{{NS}}}"
    rows = dashboard.Dashboard(TITLE).uid(UID).tags(["dask", "adaptive-dask"]).refresh("30s")
    rows = rows.time("now-6h", "now").timezone("browser").editable()
    rows = rows.with_variable(
        dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    )
    rows = rows.with_variable(
        dashboard.QueryVariable("namespace")
        .label("Dask namespace")
        .datasource(DATASOURCE)
        .query("label_values(dask_adaptive_requested_workers, namespace)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )
    rows = rows.with_row(dashboard.Row("Workers"))
    rows = rows.with_panel(
        _series(
            "Workers: requested, running, pending",
            "The preload's view: desired (its decisions), requested (the Deployment's replicas), "
            "running (connected and accepting work), pending (asked for, not connected: Pending pods wait "
            "for a node), retiring (an unfinished scale-down).",
            "short",
            (f"sum(dask_adaptive_desired_workers{adaptive})", "desired"),
            (f"sum(dask_adaptive_requested_workers{adaptive})", "requested"),
            (f"sum(dask_adaptive_observed_workers{adaptive})", "running"),
            (f"sum(dask_adaptive_pending_workers{adaptive})", "pending"),
            (f"sum(dask_adaptive_retiring_workers{adaptive})", "retiring"),
        )
    )
    rows = rows.with_panel(
        _series(
            "Workers by state (scheduler)",
            "The scheduler's own count of its workers by state.",
            "short",
            (f"sum by (state) (dask_scheduler_workers{adaptive})", "{{state}}"),
        )
    )
    rows = rows.with_row(dashboard.Row("Tasks"))
    rows = rows.with_panel(
        _series(
            "Tasks by state",
            "Tasks the scheduler holds, by state.",
            "short",
            (f"sum by (state) (dask_scheduler_tasks{adaptive})", "{{state}}"),
        )
    )
    rows = rows.with_panel(
        _series(
            "Compute and transfer time",
            "Seconds per second the workers spent computing tasks and moving their data.",
            "s",
            (f"sum(rate(dask_scheduler_tasks_compute_seconds_total{adaptive}[{RATE}]))", "compute"),
            (f"sum(rate(dask_scheduler_tasks_transfer_seconds_total{adaptive}[{RATE}]))", "transfer"),
        )
    )
    rows = rows.with_row(dashboard.Row("Memory"))
    rows = rows.with_panel(
        _series(
            "Worker memory",
            "All workers' memory: managed (results), unmanaged (the rest of the process), spilled (on disk).",
            "bytes",
            (f"sum by (type) (dask_worker_memory_bytes{adaptive})", "{{type}}"),
        )
    )
    rows = rows.with_panel(
        _series(
            "Spilling",
            "Bytes per second written to and read from the workers' spill disk, by activity.",
            "Bps",
            (f"sum by (activity) (rate(dask_worker_spill_bytes_total{adaptive}[{RATE}]))", "{{activity}}"),
        )
    )
    rows = rows.with_row(dashboard.Row("Decisions"))
    rows = rows.with_panel(
        _series(
            "Decisions by reason",
            "Every look of the preload's control loop ends in a decision (Hold, ScaleUp, ScaleDown) with a "
            "reason from a fixed set (dask_adaptive/decisions.py CAUSES).",
            "short",
            (
                f"sum by (decision, reason) (increase(dask_adaptive_decisions_total{adaptive}[{RATE}]))",
                "{{decision}} {{reason}}",
            ),
        )
    )
    rows = rows.with_panel(
        _series(
            "Scale-downs and retirements",
            "Scale-ups and scale-downs carried out, workers retired (data moved first), not-yet-arrived "
            "units cancelled, and what went wrong: failed or timed-out retirements, corrections, API errors.",
            "short",
            *(
                (f"sum(increase(dask_adaptive_{name}_total{adaptive}[{RATE}]))", name.replace("_", " "))
                for name in (
                    "scale_ups",
                    "scale_downs",
                    "retirements",
                    "cancelled",
                    "failed_retirements",
                    "retire_timeouts",
                    "corrections",
                    "api_errors",
                )
            ),
        )
    )
    rows = rows.with_row(dashboard.Row("Worker-hours"))
    hours = "sum by (group) (increase(dask_adaptive_worker_seconds_total{%s}[%s])) / 3600"
    rows = rows.with_panel(
        _stat(
            "Worker-hours in the time range",
            "Hours worker pods held a node (bound to it: pulling, running, terminating), by worker group; "
            "Pending pods are not counted. Nodes bill by the hour whatever their load: see docs/cost.md.",
            "h",
            hours % (NS, "$__range"),
            "{{group}}",
            span=8,
        )
    )
    rows = rows.with_panel(
        _series(
            "Worker-hours per day",
            "Each point: the worker-hours of the 24 hours before it, by worker group.",
            "h",
            (hours % (NS, "1d"), "{{group}}"),
            span=16,
        )
    )
    return rows


def model() -> dict:
    """The dashboard as plain JSON data, panels numbered in order (Grafana keys panels by id), and panel
    options an object (the SDK leaves them null when none are set; Grafana's panel migrations expect {})."""
    data = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
        if panel.get("options", {}) is None:
            panel["options"] = {}
    return data


def to_json() -> str:
    """The dashboard as the committed file holds it (sorted keys, two-space indent, final newline)."""
    return json.dumps(model(), sort_keys=True, indent=2) + "\n"


if __name__ == "__main__":
    print(to_json(), end="")
