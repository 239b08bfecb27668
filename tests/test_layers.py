"""The package tree is the architecture: each layer (a subpackage) imports only the layers below
it, and inside a layer each module only the modules below it (imports inside functions included)."""

import ast
from pathlib import Path

import daskgmm

# Layers, lowest first: a package may import from any earlier rank, never from a later one.
# The top-level public modules (cluster, datasets, plot) import nothing of daskgmm.
PACKAGES = [
    {"model", "runtime", "cluster", "datasets", "plot"},
    {"io", "kernels"},
    {"em"},
    {"mixture"},
    {"cli"},
    {"__init__", "__main__"},
]
# Inside each layer, lowest first: a module may import from an earlier rank of its own package.
MODULES = {
    "model": [{"statistics", "records", "validation"}, {"params"}, {"variational"}],
    "runtime": [{"resources", "certificates"}],
    "io": [{"readers", "outputs", "directories"}, {"stores"}, {"inputs"}],
    "kernels": [{"blocks"}, {"densities"}, {"sums", "reference", "numba_loops"}, {"stacked", "missing"}, {"chunk"},
                {"gpu", "online"}],
    "em": [{"progress", "chunk_tasks", "families"}, {"passes"}, {"loop", "starts"}, {"checkpoints"}],
    "mixture": [{"model_files"}, {"dask_mixture"}, {"gaussian", "bayesian"}, {"loading"}, {"selection"}],
    "cli": [{"common"}, {"demo", "model_commands"}, {"main"}],
}
PACKAGE_RANK = {name: rank for rank, layer in enumerate(PACKAGES) for name in layer}
ROOT = Path(daskgmm.__file__).parent


def module_name(path):
    """``"em.passes"`` for daskgmm/em/passes.py, ``"cluster"`` for daskgmm/cluster.py."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def is_module(name):
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imported_modules(path, source=None):
    """daskgmm modules a file imports (as ``"package.module"``), wherever the import statement is."""
    package = list(path.relative_to(ROOT).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - (node.level - 1)]
        elif (node.module or "").split(".")[0] == "daskgmm":
            base = []
            node = ast.ImportFrom(module=node.module.partition(".")[2] or None, names=node.names, level=1)
        else:
            continue
        target = base + (node.module.split(".") if node.module else [])
        for alias in node.names:  # `from ..kernels import gpu` imports a module, `from .x import f` a name
            name = ".".join(target + [alias.name])
            found.add(name if is_module(name) else ".".join(target))
    return found


def rank(module):
    """(package rank, module rank inside the package) of a module name."""
    package, _, inner = module.partition(".")
    layers = MODULES.get(package, [])
    inner_rank = next((r for r, layer in enumerate(layers) if inner in layer), None) if inner else -1
    return PACKAGE_RANK.get(package), inner_rank


def all_modules():
    return {module_name(path): path for path in ROOT.rglob("*.py") if "__pycache__" not in path.parts}


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in all_modules() if None in rank(name))
    listed = {f"{package}.{name}" for package, layers in MODULES.items() for layer in layers for name in layer}
    gone = sorted(listed - set(all_modules()))
    assert not unplaced and not gone, f"unplaced: {unplaced}, gone: {gone}"


def against_layering(name, target):
    """Whether module ``name`` importing module ``target`` goes sideways or up."""
    package, target_package = name.split(".")[0], target.split(".")[0]
    if target_package != package:
        return PACKAGE_RANK[target_package] >= PACKAGE_RANK[package]
    return "." not in name or rank(target)[1] >= rank(name)[1]  # a package's __init__ imports none of its modules


def test_no_module_imports_from_its_own_layer_or_above():
    upward = [f"{name} -> {target}" for name, path in sorted(all_modules().items())
              for target in imported_modules(path) if against_layering(name, target)]
    assert not upward, "imports against the layering: " + ", ".join(upward)


def test_the_checker_sees_imports_against_the_layering():
    """The test above can fail: a kernel importing the EM loop (relative, absolute, as a module)
    and a module importing its own package's higher module are caught; a downward import is not."""
    blocks = ROOT / "kernels" / "blocks.py"
    for source in ("from ..em.loop import advance_runs\n", "from daskgmm.em import loop\n",
                   "def f():\n    from ..em import loop\n"):
        assert imported_modules(blocks, source) == {"em.loop"}
        assert against_layering("kernels.blocks", "em.loop")
    assert imported_modules(blocks, "from .chunk import chunk_statistics\n") == {"kernels.chunk"}
    assert against_layering("kernels.blocks", "kernels.chunk")
    assert not against_layering("kernels.chunk", "kernels.blocks")
    assert not against_layering("em.loop", "model.params")
