"""Progress of a fit, sent to several listeners (the verbose printer, a progress display)."""


class Reporters:
    """Sends engine progress to several reporters (verbose printing, a progress display)."""

    def __init__(self, *reporters):
        self.reporters = [r for r in reporters if r is not None]

    def init_begin(self, init_index):
        for reporter in self.reporters:
            reporter.init_begin(init_index)

    def iteration_end(self, n_iter, change, lower_bound):
        for reporter in self.reporters:
            reporter.iteration_end(n_iter, change, lower_bound)

    def init_end(self, lower_bound, converged):
        for reporter in self.reporters:
            reporter.init_end(lower_bound, converged)


class VerbosePrinter:
    """Prints scikit-learn's verbose lines through the estimator's own methods."""

    def __init__(self, estimator):
        self.estimator = estimator

    def init_begin(self, init_index):
        self.estimator._print_verbose_msg_init_beg(init_index)

    def iteration_end(self, n_iter, change, lower_bound):
        self.estimator._print_verbose_msg_iter_end(n_iter, change)

    def init_end(self, lower_bound, converged):
        self.estimator._print_verbose_msg_init_end(lower_bound, converged)
