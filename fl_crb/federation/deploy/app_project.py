"""The Flower app project: the pyproject.toml that `flwr run` packages into a FAB.

The project holds only that file: its components point into the installed fl-crb
package (every machine needs fl-crb anyway for its terminal or edge party, and the
handlers must match those parties' code), so the FAB costs a few hundred bytes on the
wire instead of the package's sources, and stays far below Flower's 10 MB FAB cap.
Its `[tool.flwr.app.config]` lists every run-config key with its default: `flwr run
--run-config` can only override keys declared there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

APP_COMPONENTS = {
    "serverapp": "fl_crb.federation.server_app:server_app",
    "clientapp": "fl_crb.federation.client_app:client_app",
}
"""Flower component references: the authority's ServerApp and every node's ClientApp."""


def toml_value(key: str, value: bool | int | float | str) -> str:
    """`value` as a TOML literal; `key` names it in the error for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"run config {key} = {value} is not a finite number")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string takes JSON's escapes
    raise ValueError(f"run config {key} = {value!r}: expected bool, int, float or str")


def app_project_toml(run_config: dict | None = None) -> str:
    """The project's pyproject.toml, with `run_config` replacing defaults."""
    # Imported here: the ServerApp's module loads Flower whole, which the hosts that only
    # start a SuperNode (through `launcher`, which imports this module) never need.
    from fl_crb.federation.server_app import RUN_CONFIG_DEFAULTS

    config = {**RUN_CONFIG_DEFAULTS, **(run_config or {})}
    unknown = sorted(set(config) - set(RUN_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown run config keys {unknown}; known: {sorted(RUN_CONFIG_DEFAULTS)}")
    lines = [
        "[project]",
        'name = "fl-crb-federation"',
        'version = "0.1.0"',
        'description = "fl-crb federated CRB-DRQN: the authority and its terminals and edges"',
        'license = "MIT"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "fl-crb"',
        "",
        "[tool.flwr.app.components]",
        *(f'{key} = "{value}"' for key, value in APP_COMPONENTS.items()),
        "",
        "[tool.flwr.app.config]",
        *(f"{key} = {toml_value(key, value)}" for key, value in config.items()),
    ]
    return "\n".join(lines) + "\n"


def write_app_project(directory: Path, run_config: dict | None = None) -> Path:
    """Write the project into `directory` (created if needed); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(app_project_toml(run_config), encoding="utf-8")
    return directory
