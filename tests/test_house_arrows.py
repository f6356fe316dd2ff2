"""The house plan's arrows, read from the source: the leaves (attacks, corruptions, reports) import
neither the hub nor each other; nothing imports robust_eval.cli; no import cycle in jobs."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LEAVES = ("attacks", "corruptions", "reports")


def imported_packages(path: Path):
    """(top-level package, full module name) of every import in a file, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.module


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_imports_neither_the_hub_nor_another_leaf(leaf):
    files = sorted((REPO / leaf).rglob("*.py"))
    assert files
    forbidden = {"robust_eval", *LEAVES} - {leaf}
    leaks = [f"{path.relative_to(REPO)} imports {module}" for path in files
             for top, module in imported_packages(path) if top in forbidden]
    assert not leaks, leaks


def test_nothing_imports_the_cli():
    files = [p for p in (REPO / "robust_eval").rglob("*.py")
             if "cli" not in p.parts and p.name != "__main__.py"]
    files += [p for leaf in LEAVES for p in (REPO / leaf).rglob("*.py")]
    leaks = [str(p.relative_to(REPO)) for p in files
             for _, module in imported_packages(p) if module.startswith("robust_eval.cli")]
    assert not leaks, leaks


def test_cells_do_not_import_executors():
    """executors call cells (by name, so workers can import it); never the other way round."""
    modules = {module for _, module in imported_packages(REPO / "robust_eval/jobs/cells.py")}
    assert "robust_eval.jobs.executors" not in modules
