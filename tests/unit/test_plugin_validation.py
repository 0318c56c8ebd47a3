"""Every plugin mistake is reported by the plugin's name, from real installed distributions.

Each test installs a distribution the way pip does (a ``dist-info`` folder
with ``entry_points.txt`` on ``sys.path``) holding one plugin module.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from taskframe.core.plugins import load_plugins
from taskframe.testing.distributions import write_distribution

BUILTIN = {"sleep", "http", "file"}


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """install(name, source) -> a distribution ``taskframe-<name>`` 1.2.3 with entry point name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = []

    def install(name: str, source: str, version: str = "1.2.3") -> str:
        module = f"tf_test_plugin_{name}"
        write_distribution(
            tmp_path,
            f"taskframe-{name}",
            {name: module},
            version=version,
            modules={module: textwrap.dedent(source)},
        )
        installed.append(module)
        return module

    yield install
    for module in installed:
        sys.modules.pop(module, None)


HEADER = """
from marshmallow import Schema, fields
from taskframe.core import Executor, hookimpl

class Payload(Schema):
    text = fields.String()

def run(payload, context):
    return payload
"""


def test_a_misspelt_hook_is_reported_with_the_right_name(install) -> None:
    install(
        "typo",
        HEADER
        + """
@hookimpl
def taskframe_register_executor(register):
    register(Executor(name="typo", schema=Payload(), run=run))
""",
    )
    plugins = load_plugins()
    assert plugins.failures["typo"] == (
        "unknown hook taskframe_register_executor (did you mean taskframe_register_executors?)"
    )
    assert "typo" not in plugins.executors
    assert BUILTIN <= set(plugins.executors)


def test_a_hook_without_hookimpl_is_reported(install) -> None:
    install(
        "unmarked",
        HEADER
        + """
def taskframe_register_executors(register):
    register(Executor(name="unmarked", schema=Payload(), run=run))
""",
    )
    plugins = load_plugins()
    assert plugins.failures["unmarked"] == (
        "taskframe_register_executors is not marked with @hookimpl"
    )
    assert "unmarked" not in plugins.executors


def test_a_plugin_with_no_hook_is_reported(install) -> None:
    install("empty", "def register_executors(register):\n    pass\n")
    assert load_plugins().failures["empty"] == "implements no taskframe_* hook"


def test_a_schema_class_is_reported_and_the_plugins_other_executors_load(install) -> None:
    install(
        "classy",
        HEADER
        + """
@hookimpl
def taskframe_register_executors(register):
    register(Executor(name="classy", schema=Payload, run=run))
    register.add(Executor(name="classy.ok", schema=Payload(), run=run))
""",
    )
    plugins = load_plugins()
    assert plugins.failures["classy"] == (
        "job type 'classy': schema is the class Payload, not an instance (write schema=Payload())"
    )
    assert "classy" not in plugins.executors
    assert "classy.ok" in plugins.executors


@pytest.mark.parametrize(
    ("registration", "message"),
    [
        (
            'Executor(name="odd", schema={"text": "str"}, run=run)',
            "job type 'odd': schema must be a marshmallow Schema instance, not {'text': 'str'}",
        ),
        (
            'Executor(name="odd", schema=Payload(), run="run")',
            "job type 'odd': run must be callable, not 'run'",
        ),
        (
            'Executor(name="Bad Name!", schema=Payload(), run=run)',
            "job type name 'Bad Name!' is invalid: it must match [a-z][a-z0-9_.-]* "
            "(at most 200 characters)",
        ),
        ('{"name": "odd"}', "register() takes an Executor, not dict"),
    ],
    ids=["schema-not-a-schema", "run-not-callable", "bad-name", "not-an-executor"],
)
def test_a_bad_executor_is_reported_by_plugin_name(install, registration, message) -> None:
    install(
        "odd",
        HEADER
        + f"""
@hookimpl
def taskframe_register_executors(register):
    register({registration})
""",
    )
    plugins = load_plugins()
    assert plugins.failures["odd"] == message
    assert "odd" not in plugins.executors and BUILTIN <= set(plugins.executors)


def test_a_taken_name_names_its_holder_and_the_other_executors_load(install) -> None:
    install(
        "clash",
        HEADER
        + """
@hookimpl
def taskframe_register_executors(register):
    register(Executor(name="sleep", schema=Payload(), run=run))
    register(Executor(name="nap", schema=Payload(), run=run))
""",
    )
    plugins = load_plugins()
    assert plugins.failures["clash"] == "job type 'sleep' is already registered by plugin 'sleep'"
    assert plugins.owners["sleep"] == "sleep" and plugins.owners["nap"] == "clash"


def test_a_disabled_plugin_is_not_imported(install, monkeypatch) -> None:
    module = install("noisy", "raise RuntimeError('imported although disabled')\n")
    monkeypatch.setenv("TASKFRAME_DISABLE_PLUGINS", "noisy, http")
    plugins = load_plugins()
    assert not {"noisy", "http"} & set(plugins.failures)
    assert module not in sys.modules
    assert "http" not in plugins.executors and "sleep" in plugins.executors
    assert plugins.describe()["disabled"] == ["http", "noisy"]
    # The explicit list wins over the variable.
    assert "noisy" in load_plugins(disabled=[]).failures


def test_describe_lists_distribution_version_hooks_and_job_types(install) -> None:
    install(
        "good",
        HEADER
        + """
@hookimpl
def taskframe_register_executors(register):
    register.add(Executor(name="good", schema=Payload(), run=run))

@hookimpl
def taskframe_job_finished(job):
    pass
""",
        version="4.5.6",
    )
    install("broken", "raise ImportError('missing dependency')\n")
    described = load_plugins().describe()
    [good] = [plugin for plugin in described["plugins"] if plugin["name"] == "good"]
    assert good == {
        "name": "good",
        "distribution": "taskframe-good",
        "version": "4.5.6",
        "hooks": ["taskframe_job_finished", "taskframe_register_executors"],
        "job_types": ["good"],
    }
    assert {"name": "broken", "error": "ImportError: missing dependency"} in described["failures"]
    [sleep] = [plugin for plugin in described["plugins"] if plugin["name"] == "sleep"]
    assert sleep["distribution"] == "taskframe" and sleep["job_types"] == ["sleep"]


def test_the_public_api_exports_the_option_helper_and_is_typed() -> None:
    from importlib import resources

    import taskframe.core
    from taskframe.core.options import add_option

    assert taskframe.core.add_option is add_option
    assert {"add_option", "ExecutorRegistry"} <= set(taskframe.core.__all__)
    assert resources.files("taskframe.core").joinpath("py.typed").is_file()
