"""Progress of a fit, sent to several listeners (the verbose printer, a progress display).

A fit's starts (``n_init``) advance together, one shared pass per iteration, so every
message names its start.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Protocol


class Reporter(Protocol):
    """Receives the progress of a fit. ``init_index`` numbers the starts from 0."""

    def init_begin(self, init_index: int) -> None: ...

    def iteration_end(self, init_index: int, n_iter: int, change: float, lower_bound: float) -> None: ...

    def init_end(self, init_index: int, lower_bound: float, converged: bool) -> None: ...

    def pass_end(self, seconds: float) -> None: ...

    def chunks_done(self, done: int, total: int) -> None: ...


class SilentReporter:
    def init_begin(self, init_index):
        pass

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        pass

    def init_end(self, init_index, lower_bound, converged):
        pass

    def pass_end(self, seconds):
        pass

    def chunks_done(self, done, total):
        pass

    def chunk_listener(self):
        return None


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

    def chunks_done(self, done, total):
        self._send("chunks_done", done, total)

    def chunk_listener(self):
        """``chunks_done`` if some reporter shows chunks within a pass, else None (counting them
        on a distributed cluster submits the pass as futures: done only when someone looks)."""
        def listens(reporter):
            method = getattr(type(reporter), "chunks_done", None)
            return method is not None and method is not SilentReporter.chunks_done \
                and getattr(reporter, "live", True) is not None
        return self.chunks_done if any(listens(r) for r in self.reporters) else None


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


class TextProgress(SilentReporter):
    """One line per EM pass: the mean log-likelihood (or lower bound) and its change against ``tol`` (the
    convergence test; with several starts, the best and how many still run), and the pass's time.
    ``fit(X, progress=True)`` and the command line's ``fit`` use it.

    Parameters
    ----------
    tol : float
        The fit's ``tol``, shown beside the change.
    n_init : int
        Starts of the fit.
    write : callable ``(line)``, optional
        Where lines go (default: print); None keeps them silent (the summary methods still work).
    live : callable ``(text)``, optional
        Shows the chunks done within a long pass (a terminal rewrites one line with it).
    quantity : str
        What the lower bound is ("mean log-likelihood"; a variational fit's "lower bound").
    """

    def __init__(self, tol, n_init, write=print, live=None, quantity="mean log-likelihood"):
        self.tol, self.several, self.write, self.live = tol, n_init > 1, write, live
        self.quantity = quantity
        self.pass_seconds, self.latest, self.ended = [], {}, {}

    def iteration_end(self, init_index, n_iter, change, lower_bound):
        self.latest[init_index] = (n_iter, change, lower_bound)

    def init_end(self, init_index, lower_bound, converged):
        self.ended[init_index] = (lower_bound, converged)

    def chunks_done(self, done, total):
        if self.live is not None and done < total:
            self.live(f"  pass {len(self.pass_seconds) + 1}: {done} of {total} chunks")

    def pass_end(self, seconds):
        self.pass_seconds.append(seconds)
        if self.write is None or not self.latest:
            return
        n_iter = max(n for n, _, _ in self.latest.values())
        if self.several:
            best = max(self.latest, key=lambda i: self.latest[i][2])
            running = [i for i in self.latest if i not in self.ended]
            change = max((abs(self.latest[i][1]) for i in running), default=0.0)
            state = (f"largest change {_change(change)} (tol {self.tol:g}), {len(running)} of "
                     f"{len(self.latest)} starts still running") if running else "all converged or done"
            line = f"best {self.quantity} {self.latest[best][2]: .6f} (start {best + 1}), {state}"
        else:
            (_, change, lower_bound), = self.latest.values()
            state = "converged" if self.ended.get(0, (0, False))[1] else f"change {_change(change)} (tol {self.tol:g})"
            line = f"{self.quantity} {lower_bound: .6f}  {state}"
        self.latest.clear()
        self.write(f"  iteration {n_iter:>3}  {line}  {seconds:.2f} s")

    def best_start(self):
        """The start (numbered from 1) the fit keeps, by scikit-learn's rule (the first with the
        largest lower bound); None for a single start."""
        if not (self.several and self.ended):
            return None
        return max(sorted(self.ended), key=lambda i: self.ended[i][0]) + 1

    def winner(self):
        """The line that says which start won, or None for a single start."""
        best = self.best_start()
        return None if best is None else f"best of {len(self.ended)} starts: start {best}"

    def pass_time(self):
        if not self.pass_seconds:
            return "no EM pass ran"
        median = f"{statistics.median(self.pass_seconds):.3f} s per"
        if self.several:
            return f"{median} pass, median of {len(self.pass_seconds)} (the starts share each pass)"
        return f"{median} iteration, median of {len(self.pass_seconds)}"


def _change(change):
    return f"{change:.2e}" if math.isfinite(change) else "- (first iteration)"


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where ``progress=True`` shows :class:`NotebookProgress`)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress(TextProgress):
    """A fit's progress in a notebook cell, updated in place: the latest pass's line (as
    :class:`TextProgress` words it), a bar of the chunks done within the running pass, and at
    the end the time per pass and, with several starts, which one won. Plain HTML through
    IPython's display (no widget library needed).

    Parameters
    ----------
    tol, n_init, quantity
        As for :class:`TextProgress`.
    display : callable, optional
        ``display(html) -> handle`` with ``handle.update(html)``; default IPython's
        ``display(HTML(...), display_id=True)``.
    """

    def __init__(self, tol, n_init, quantity="mean log-likelihood", display=None):
        super().__init__(tol, n_init, write=self._show_pass, live=self.chunks_done, quantity=quantity)
        self.n_init, self.display = n_init, display or _ipython_display
        self.handle, self.line, self.started = None, "", None

    def init_begin(self, init_index):
        if self.started is None:
            self.started = time.perf_counter()
            self._render("initialisation done, first pass running")

    def chunks_done(self, done, total):
        if done < total:
            self._render(f'<progress value="{done}" max="{total}" style="width:12em"></progress> '
                         f"pass {len(self.pass_seconds) + 1}: {done} of {total} chunks")

    def pass_end(self, seconds):
        super().pass_end(seconds)  # the pass's line, through _show_pass
        if len(self.ended) == self.n_init:
            self._render(_escape("; ".join([self.pass_time()] + ([self.winner()] if self.winner() else []))))

    def _show_pass(self, line):
        self.line = line.strip()
        self._render()

    def _render(self, extra=""):
        elapsed = "" if self.started is None else f" ({time.perf_counter() - self.started:.1f} s)"
        html = (f"<div style='font-family:monospace'><b>daskgmm</b>{_escape(elapsed)}<br>"
                f"{_escape(self.line)}{'<br>' if self.line and extra else ''}{extra}</div>")
        if self.handle is None:
            self.handle = self.display(html)
        else:
            self.handle.update(html)


def _ipython_display(html):
    from IPython.display import HTML, display

    return display(HTML(html), display_id=True)


def _escape(text):
    import html

    return html.escape(text)
