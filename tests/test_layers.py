"""The import direction between the project's folders: each imports only from the layers below.

domain and codec are the floor; telemetry (metrics, traces, logs) sits just above domain so every
layer but the sandboxed workflows can report. store builds on domain; workflows see only domain (the sandbox);
activities and service build on the store. The outer layer (api, cli, workers, devstack) wires
everything together; within it, api never imports the processes, and the CLI is never imported
by the processes it starts.
"""

import ast
from pathlib import Path

import pytest

from tests.support import REPO

ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "codec": set(),
    "telemetry": {"domain"},
    "store": {"domain", "telemetry"},
    "workflows": {"domain"},
    "activities": {"domain", "store", "telemetry"},
    "service": {"domain", "store", "telemetry"},
    "api": {"domain", "store", "service", "codec", "telemetry"},
    "workers": {
        "domain",
        "store",
        "service",
        "codec",
        "telemetry",
        "activities",
        "workflows",
        "api",
        "devstack",
    },
    "devstack": {"domain", "workers"},
    "cli": {
        "domain",
        "store",
        "service",
        "codec",
        "telemetry",
        "activities",
        "workflows",
        "workers",
        "devstack",
    },
}


def _imports(path: Path) -> set[str]:
    """The project folders a module imports from (absolute imports only: we use no others)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(ALLOWED)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_from_those_below_it(layer: str) -> None:
    modules = sorted((REPO / layer).rglob("*.py"))
    assert modules, f"no modules under {layer}/"
    upward = {
        str(module.relative_to(REPO)): sorted(_imports(module) - ALLOWED[layer] - {layer})
        for module in modules
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from api.app import create_app\nimport domain.flow\n")
    assert _imports(module) - ALLOWED["store"] == {"api"}
