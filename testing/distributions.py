"""Install a plugin distribution the way pip lays one out, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_distribution(
    folder: Path,
    name: str,
    entry_points: Mapping[str, str],
    *,
    version: str = "0.1",
    modules: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<name>-<version>.dist-info`` (METADATA and the ``taskframe`` entry points)
    and the ``modules`` (module name -> source) into ``folder``; return ``folder``.

    With ``folder`` on ``sys.path`` or ``PYTHONPATH``, taskframe finds the
    plugins through their entry points exactly as if pip had installed them.
    """
    dist_info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = [f"{plugin} = {module}" for plugin, module in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("[taskframe]\n" + "\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (folder / f"{module}.py").write_text(source)
    return folder
