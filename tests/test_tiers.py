"""How the tests are organised: the tiers of conftest.py (markers cluster, subprocess, slow; `make
test-fast` runs none of them), and shared helpers in conftest.py only."""

import ast
import importlib
from pathlib import Path

from conftest import CLUSTER_MODULES, SLOW_MODULES, SUBPROCESS_MODULES, TIERS


def test_tiers_name_tests_and_modules_that_exist():
    """A renamed test or module must not silently leave its tier."""
    for tier in TIERS.values():
        for name in tier:
            module, test = name.split("::")
            assert hasattr(importlib.import_module(module), test), name
    for module in SUBPROCESS_MODULES | CLUSTER_MODULES | SLOW_MODULES:
        importlib.import_module(module)


def test_no_test_imports_another_test_file():
    """Helpers live in conftest.py: a test module is never imported by another."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name} imports {name}" for name in names if name and name.startswith("test_")]
    assert not offenders, offenders
