"""Each module imports only from the layers below it (imports inside functions included)."""

import ast
from pathlib import Path

import daskgmm

# Lowest first. A module may import from any earlier layer, never from its own or a later one.
LAYERS = [
    {"stats", "runtime", "outputs", "cluster", "plot", "datasets", "reporting", "validation", "certificates", "readers",
     "records"},
    {"params"},
    {"blocks", "variational"},
    {"densities"},
    {"moments", "reference", "compiled"},
    {"stacked"},
    {"kernels"},
    {"gpu", "io", "family", "online", "tasks"},
    {"data"},
    {"passes"},
    {"engine"},
    {"init", "model_io"},
    {"base"},
    {"estimator", "bayesian"},
    {"fitted"},
    {"selection"},
    {"demo"},
    {"console"},
    {"cli_model"},
    {"cli", "__init__"},
    {"__main__"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
PACKAGE = Path(daskgmm.__file__).parent


def imported_modules(path):
    """daskgmm modules a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("daskgmm."):
            found.add(node.module.split(".")[1])
    return found


def test_every_module_has_a_layer():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules == set(RANK), f"unplaced: {modules - set(RANK)}, gone: {set(RANK) - modules}"


def test_no_module_imports_from_its_own_layer_or_above():
    upward = []
    for path in sorted(PACKAGE.glob("*.py")):
        for target in imported_modules(path):
            if target in RANK and RANK[target] >= RANK[path.stem]:
                upward.append(f"{path.stem} -> {target}")
    assert not upward, "imports against the layering: " + ", ".join(upward)
