"""Progress of a fit, sent to several listeners (the verbose printer, a progress display).

A fit's starts (``n_init``) advance together, one shared pass per iteration, so every
message names its start.
"""

from __future__ import annotations

import time
from typing import Protocol


class Reporter(Protocol):
    """Receives the progress of a fit. ``init_index`` numbers the starts from 0."""

    def init_begin(self, init_index: int) -> None: ...

    def iteration_end(self, init_index: int, n_iter: int, change: float, lower_bound: float) -> None: ...

    def init_end(self, init_index: int, lower_bound: float, converged: bool) -> None: ...

    def pass_end(self, seconds: float) -> None: ...


class SilentReporter:
    def init_begin(self, init_index):
        pass

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        pass

    def init_end(self, init_index, lower_bound, converged):
        pass

    def pass_end(self, seconds):
        pass


class Reporters:
    """Sends a fit's progress to several reporters; a method a reporter lacks is skipped (a
    user's progress object may listen to some events only)."""

    def __init__(self, *reporters):
        self.reporters = [r for r in reporters if r is not None]

    def _send(self, event, *args):
        for reporter in self.reporters:
            method = getattr(reporter, event, None)
            if method is not None:
                method(*args)

    def init_begin(self, init_index):
        self._send("init_begin", init_index)

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        self._send("iteration_end", init_index, n_iter, change, lower_bound)

    def init_end(self, init_index, lower_bound, converged):
        self._send("init_end", init_index, lower_bound, converged)

    def pass_end(self, seconds):
        self._send("pass_end", seconds)


class VerbosePrinter(SilentReporter):
    """scikit-learn's ``verbose`` lines (``verbose`` 1 or 2, every ``verbose_interval``
    iterations). With one start they read exactly as scikit-learn's; with several, which
    advance together, the iteration lines name their start."""

    def __init__(self, verbose: int, verbose_interval: int, n_init: int):
        self.verbose, self.interval, self.several = verbose, verbose_interval, n_init > 1
        self.init_started, self.iteration_printed = {}, {}

    def init_begin(self, init_index):
        if self.verbose:
            print("Initialization %d" % init_index)
            self.init_started[init_index] = self.iteration_printed[init_index] = time.time()

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        if not self.verbose or n_iter % self.interval:
            return
        name = " (initialization %d)" % init_index if self.several else ""
        if self.verbose == 1:
            print("  Iteration %d%s" % (n_iter, name))
            return
        now = time.time()
        print("  Iteration %d%s\t time lapse %.5fs\t ll change %.5f"
              % (n_iter, name, now - self.iteration_printed[init_index], change))
        self.iteration_printed[init_index] = now

    def init_end(self, init_index, lower_bound, converged):
        if not self.verbose:
            return
        name = "Initialization %d" % init_index if self.several else "Initialization"
        message = f"{name} {'converged' if converged else 'did not converge'}."
        if self.verbose >= 2:
            message += f" time lapse {time.time() - self.init_started[init_index]:.5f}s\t lower bound {lower_bound:.5f}."
        print(message)
