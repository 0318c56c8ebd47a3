"""Write deploy/grafana-dashboard.json: a Grafana dashboard on taskframe's metrics.

Run ``python docs/_hooks/grafana.py`` after changing the panels below; the docs
build (hooks.py) and tests/unit/test_grafana_dashboard.py check that every
metric the dashboard queries is one ``GET /metrics`` exports.
"""

from __future__ import annotations

import json
from pathlib import Path

TYPE = 'type=~"$type"'
PANELS = [
    # (title, unit, [(PromQL, legend)], kind)
    ("Jobs submitted per second", "ops", [(f"sum by (type) (rate(taskframe_jobs_submitted_total{{{TYPE}}}[$__rate_interval]))", "{{type}}")], "timeseries"),
    ("Jobs finished per second", "ops", [(f"sum by (type, outcome) (rate(taskframe_jobs_finished_total{{{TYPE}}}[$__rate_interval]))", "{{type}} {{outcome}}")], "timeseries"),
    ("Ready jobs (queued and due)", "short", [(f"sum by (type) (max by (type, priority) (taskframe_queue_depth{{{TYPE}}}))", "{{type}}")], "timeseries"),
    ("Oldest ready job", "s", [(f"max by (type) (taskframe_oldest_ready_job_age_seconds{{{TYPE}}})", "{{type}}")], "timeseries"),
    ("Attempts started, retried and reaped per second", "ops", [
        (f"sum by (type) (rate(taskframe_jobs_leased_total{{{TYPE}}}[$__rate_interval]))", "leased {{type}}"),
        (f"sum by (type) (rate(taskframe_attempts_retried_total{{{TYPE}}}[$__rate_interval]))", "retried {{type}}"),
        (f"sum by (type, reason) (rate(taskframe_attempts_reaped_total{{{TYPE}}}[$__rate_interval]))", "reaped {{type}} {{reason}}"),
    ], "timeseries"),
    ("Run time (p50, p95)", "s", [
        (f"histogram_quantile(0.5, sum by (le, type) (rate(taskframe_job_run_seconds_bucket{{{TYPE}}}[$__rate_interval])))", "p50 {{type}}"),
        (f"histogram_quantile(0.95, sum by (le, type) (rate(taskframe_job_run_seconds_bucket{{{TYPE}}}[$__rate_interval])))", "p95 {{type}}"),
    ], "timeseries"),
    ("Wait from ready to leased (p50, p95)", "s", [
        (f"histogram_quantile(0.5, sum by (le, type) (rate(taskframe_job_wait_seconds_bucket{{{TYPE}}}[$__rate_interval])))", "p50 {{type}}"),
        (f"histogram_quantile(0.95, sum by (le, type) (rate(taskframe_job_wait_seconds_bucket{{{TYPE}}}[$__rate_interval])))", "p95 {{type}}"),
    ], "timeseries"),
    ("Lease requests per second", "ops", [("sum by (result) (rate(taskframe_lease_requests_total[$__rate_interval]))", "{{result}}")], "timeseries"),
    ("Lease request latency (p50, p99, long-polls included)", "s", [
        ("histogram_quantile(0.5, sum by (le) (rate(taskframe_lease_request_seconds_bucket[$__rate_interval])))", "p50"),
        ("histogram_quantile(0.99, sum by (le) (rate(taskframe_lease_request_seconds_bucket[$__rate_interval])))", "p99"),
    ], "timeseries"),
    ("HTTP requests per second", "reqps", [("sum by (route, status) (rate(taskframe_http_requests_total[$__rate_interval]))", "{{route}} {{status}}")], "timeseries"),
    ("HTTP 5xx per second", "reqps", [('sum by (route) (rate(taskframe_http_requests_total{status=~"5.."}[$__rate_interval]))', "{{route}}")], "timeseries"),
    ("Database up (per server)", "short", [("min by (instance) (taskframe_database_up)", "{{instance}}")], "stat"),
]  # fmt: skip


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
                    {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend, "datasource": datasource}
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
