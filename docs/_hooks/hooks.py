"""MkDocs hooks: the reference pages and tables generated from taskframe's code at build time.

Generated pages are added in memory (nothing is written under ``docs/``):

- ``reference/http-api.md`` and ``reference/openapi.json``: the OpenAPI document the
  real app serves (``create_app`` on a throw-away SQLite file, ``GET /openapi.json``);
- ``reference/configuration.md`` and ``reference/cli.md``: the argparse parsers of
  ``taskframe-server``, ``taskframe-worker`` and ``taskframe``;
- ``reference/errors.md``: the error body, its codes (``taskframe.core.errors.ErrorCode``,
  with the client's class for each) and the HTTP statuses.

Placeholders in hand-written pages, ``<!-- generated: NAME -->``, are replaced by
``lifecycle-diagram`` / ``lifecycle-table`` (from ``core/model.py``'s ``next_status``),
``metrics-table`` (a real scrape of ``GET /metrics``), ``job-type-payloads``
(``GET /job-types``) and ``version``.
The Grafana dashboard in ``deploy/`` is checked against the metric names.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.metadata import version
from pathlib import Path

import pages
import sources
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
GENERATED_PAGES = {
    "reference/http-api.md": pages.http_api_page,
    "reference/openapi.json": pages.openapi_json,
    "reference/configuration.md": pages.configuration_page,
    "reference/cli.md": pages.cli_page,
    "reference/errors.md": pages.errors_page,
}
PLACEHOLDERS = {
    "lifecycle-diagram": pages.lifecycle_diagram,
    "lifecycle-table": pages.lifecycle_table,
    "metrics-table": pages.metrics_table,
    "job-type-payloads": pages.job_type_payloads,
    "version": lambda: version("taskframe"),
}
PLACEHOLDER = re.compile(r"<!-- generated: ([a-z-]+) -->")


@cache
def _render(name: str) -> str:
    return PLACEHOLDERS[name]()


def on_pre_build(config) -> None:
    check_grafana_dashboard(ROOT / "deploy" / "grafana-dashboard.json")


def on_files(files: Files, config) -> Files:
    for path, build in GENERATED_PAGES.items():
        files.append(File.generated(config, path, content=build()))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        name = match[1]
        if name not in PLACEHOLDERS:
            raise PluginError(f"{page.file.src_uri}: unknown placeholder {match[0]}")
        return _render(name)

    return PLACEHOLDER.sub(replace, markdown)


# Docstrings use Sphinx's roles (``:class:`~a.b.C```), which mkdocstrings leaves as text.
SPHINX_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):<code>(~?)([^<]*)</code>")


def on_page_content(html: str, page, config, files) -> str:
    def code(match: re.Match) -> str:
        name = match[2].rsplit(".", 1)[-1] if match[1] else match[2]
        return f"<code>{name}</code>"

    return SPHINX_ROLE.sub(code, html)


def check_grafana_dashboard(path: Path) -> None:
    """Every taskframe_* series the dashboard queries is one the server exports."""
    text = path.read_text()
    json.loads(text)  # valid JSON, or the build fails here
    used = set(re.findall(r"\btaskframe_[a-z_]+", text))
    unknown = sorted(used - sources.scraped_names())
    if unknown:
        raise PluginError(f"{path.name} queries metrics the server does not export: {unknown}")
