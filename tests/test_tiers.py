"""The test tiers of conftest.py (markers cluster, subprocess, slow; `make test-fast` runs none of them)."""

import importlib

from conftest import CLUSTER_MODULES, SLOW_MODULES, SUBPROCESS_MODULES, TIERS


def test_tiers_name_tests_and_modules_that_exist():
    """A renamed test or module must not silently leave its tier."""
    for tier in TIERS.values():
        for name in tier:
            module, test = name.split("::")
            assert hasattr(importlib.import_module(module), test), name
    for module in SUBPROCESS_MODULES | CLUSTER_MODULES | SLOW_MODULES:
        importlib.import_module(module)
