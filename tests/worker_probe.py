"""Functions run on Dask workers by the tests, in a module that imports nothing heavy (a test
module would import scikit-learn on the worker just by being unpickled there)."""


def heavy_modules_imported():
    import sys

    return sorted(name for name in ("sklearn", "joblib", "matplotlib") if name in sys.modules)


def hog_memory(block):
    """A chunk step that allocates 1.2 GB, far beyond a small worker's limit (its nanny kills it)."""
    import numpy as np

    big = np.ones(150_000_000)
    return block + 0 * big[:1].sum()


def die_once_at(block, flag, chunk_index, block_info=None):
    """The worker reading chunk ``chunk_index`` dies (SIGKILL) the first time; its rerun elsewhere
    (``flag``, a file, says it happened) reads normally: a worker lost in the middle of a task."""
    import os
    import signal

    if block_info[0]["chunk-location"][0] == chunk_index and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return block
