"""Write deploy/grafana-dashboard.json: a Grafana dashboard on taskframe's metrics.

Run ``python docs/_hooks/grafana.py`` after changing the panels below; the docs
build (hooks.py) and tests/unit/test_grafana_dashboard.py check that every
metric the dashboard queries is one ``GET /metrics`` exports.
"""

from __future__ import annotations

import json
from pathlib import Path

TYPE = 'type=~"$type"'
WINDOW = "[$__rate_interval]"


def rate(metric: str, by: str, selector: str = TYPE) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{WINDOW}))"


def quantile(q: float, histogram: str, by: str = "type", selector: str = TYPE) -> str:
    inner = f"rate({histogram}_bucket{{{selector}}}{WINDOW})"
    return f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) ({inner}))"


# (title, unit, [(PromQL, legend)], panel type)
PANELS = [
    (
        "Jobs submitted per second",
        "ops",
        [(rate("taskframe_jobs_submitted_total", "type"), "{{type}}")],
        "timeseries",
    ),
    (
        "Jobs finished per second",
        "ops",
        [(rate("taskframe_jobs_finished_total", "type, outcome"), "{{type}} {{outcome}}")],
        "timeseries",
    ),
    (
        "Ready jobs (queued and due)",
        "short",
        [(f"sum by (type) (taskframe_queue_depth{{{TYPE}}})", "{{type}}")],
        "timeseries",
    ),
    (
        "Oldest ready job",
        "s",
        [(f"max by (type) (taskframe_oldest_ready_job_age_seconds{{{TYPE}}})", "{{type}}")],
        "timeseries",
    ),
    (
        "Attempts started, retried and reaped per second",
        "ops",
        [
            (rate("taskframe_jobs_leased_total", "type"), "leased {{type}}"),
            (rate("taskframe_attempts_retried_total", "type"), "retried {{type}}"),
            (rate("taskframe_attempts_reaped_total", "type, reason"), "reaped {{type}} {{reason}}"),
        ],
        "timeseries",
    ),
    (
        "Run time (p50, p95)",
        "s",
        [
            (quantile(0.5, "taskframe_job_run_seconds"), "p50 {{type}}"),
            (quantile(0.95, "taskframe_job_run_seconds"), "p95 {{type}}"),
        ],
        "timeseries",
    ),
    (
        "Wait from ready to leased (p50, p95)",
        "s",
        [
            (quantile(0.5, "taskframe_job_wait_seconds"), "p50 {{type}}"),
            (quantile(0.95, "taskframe_job_wait_seconds"), "p95 {{type}}"),
        ],
        "timeseries",
    ),
    (
        "Lease requests per second",
        "ops",
        [(rate("taskframe_lease_requests_total", "result", ""), "{{result}}")],
        "timeseries",
    ),
    (
        "Lease request latency (p50, p99, long-polls included)",
        "s",
        [
            (quantile(0.5, "taskframe_lease_request_seconds", "", ""), "p50"),
            (quantile(0.99, "taskframe_lease_request_seconds", "", ""), "p99"),
        ],
        "timeseries",
    ),
    (
        "HTTP requests per second",
        "reqps",
        [(rate("taskframe_http_requests_total", "route, status", ""), "{{route}} {{status}}")],
        "timeseries",
    ),
    (
        "HTTP 5xx per second",
        "reqps",
        [(rate("taskframe_http_requests_total", "route", 'status=~"5.."'), "{{route}}")],
        "timeseries",
    ),
    (
        "Database up (per server)",
        "short",
        [("min by (instance) (taskframe_database_up)", "{{instance}}")],
        "stat",
    ),
]


def dashboard() -> dict:
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = []
    for index, (title, unit, queries, kind) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": kind,
                "title": title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
                if kind == "timeseries"
                else {},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "expr": expr,
                        "legendFormat": legend,
                        "datasource": datasource,
                    }
                    for n, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "title": "taskframe",
        "uid": "taskframe",
        "tags": ["taskframe"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "type",
                    "label": "job type",
                    "type": "query",
                    "datasource": datasource,
                    "query": "label_values(taskframe_jobs_submitted_total, type)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
    target.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {target}")
