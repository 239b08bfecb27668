"""Records and defaults that several layers share, kept at the bottom so that no module imports a
higher layer only for one of them."""

from __future__ import annotations

from dataclasses import dataclass, field

# Fan-in of the tree that merges a pass's chunk statistics (``split_every``).
DEFAULT_SPLIT_EVERY = 16


@dataclass
class FitResult:
    """Outcome of one EM run (or the best of several): the final parameters (a
    :class:`~daskgmm.model.params.GaussianParams` or :class:`~daskgmm.model.variational.VariationalParams`),
    the last lower bound and every iteration's, the iterations made and whether they converged."""

    params: object
    lower_bound: float
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
