"""Pictures of a fitted mixture (matplotlib; ``pip install 'daskgmm[plot]'``).

- :func:`plot_convergence`: the mean log-likelihood per EM iteration;
- :func:`plot_components`: a sample of the data coloured by component, each
  component's 1- and 2-sigma ellipses, and (for 2-D data) the decision regions;
  data with more than two features are shown in the plane of their first two
  principal axes;
- BIC/AIC against K: :meth:`daskgmm.mixture.selection.SelectionResult.plot`.
"""

from __future__ import annotations

import numpy as np


def file_pyplot():
    """``matplotlib.pyplot`` drawing to files (Agg backend), or None with a hint printed if missing."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install 'daskgmm[plot]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    return ax


def plot_convergence(gmm, ax=None):
    """Mean log-likelihood (the lower bound) at every iteration of the kept run."""
    ax = _axes(ax)
    bounds = np.asarray(gmm.lower_bounds_, dtype=float)
    from matplotlib.ticker import MaxNLocator

    ax.plot(np.arange(1, bounds.size + 1), bounds, marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("EM iteration")
    ax.set_ylabel(getattr(gmm, "_bound_name", "mean log-likelihood"))
    ax.set_title(f"{'converged' if gmm.converged_ else 'did not converge'} after {gmm.n_iter_} iterations")
    return ax


def _full_covariances(gmm):
    k, d = gmm.means_.shape
    cov = np.asarray(gmm.covariances_, dtype=float)
    if gmm.covariance_type == "full":
        return cov
    if gmm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if gmm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])


def plot_components(gmm, X, ax=None, max_points=20_000, random_state=0):
    """Sample of ``X`` coloured by component, with 1- and 2-sigma ellipses of every component.

    ``X`` may be large (NumPy or Dask): at most ``max_points`` rows are drawn.
    For D > 2 everything is projected on the first two principal axes of the
    sample; decision regions are drawn for D == 2 only.
    """
    from matplotlib.patches import Ellipse

    ax = _axes(ax)
    X = X if hasattr(X, "shape") else np.asarray(X)
    rng = np.random.default_rng(random_state)
    if X.shape[0] > max_points:
        index = np.sort(rng.choice(X.shape[0], max_points, replace=False))
        X = X[index]
    sample = np.asarray(X.compute() if hasattr(X, "compute") else X, dtype=float)
    labels = np.asarray(gmm.predict(sample))
    if sample.shape[1] == 2:  # the data's own axes and units
        centre, basis = np.zeros(2), np.eye(2)
    else:
        centre = sample.mean(axis=0)
        _, _, vt = np.linalg.svd(sample - centre, full_matrices=False)
        basis = vt[:2].T
    points = (sample - centre) @ basis
    means = (gmm.means_ - centre) @ basis
    covariances = basis.T @ _full_covariances(gmm) @ basis
    colours = [f"C{k % 10}" for k in range(gmm.n_components)]
    if sample.shape[1] == 2:
        # the regions cover the whole visible area: the points and every 2-sigma ellipse, with a margin
        reach = 2 * np.sqrt(np.maximum(np.diagonal(covariances, axis1=1, axis2=2), 0))
        low = np.minimum(points.min(axis=0), (means - reach).min(axis=0))
        high = np.maximum(points.max(axis=0), (means + reach).max(axis=0))
        low, high = low - 0.05 * (high - low), high + 0.05 * (high - low)
        xs, ys = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
        grid = np.column_stack([xs.ravel(), ys.ravel()]) + centre
        regions = np.asarray(gmm.predict(grid)).reshape(xs.shape)
        ax.contourf(xs, ys, regions, levels=np.arange(gmm.n_components + 1) - 0.5,
                    colors=colours[: gmm.n_components], alpha=0.12)
    size = float(np.clip(3000 / len(points), 2, 16))  # visible dots for small data
    ax.scatter(points[:, 0], points[:, 1], s=size, c=[colours[k] for k in labels], alpha=0.5, linewidths=0)
    for k, (mean, cov) in enumerate(zip(means, covariances)):
        values, vectors = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for sigmas in (1, 2):
            width, height = 2 * sigmas * np.sqrt(np.maximum(values[::-1], 0))
            ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False, color=colours[k], linewidth=1.5))
        ax.plot(*mean, marker="x", color="black", markersize=6)
    ax.set_title(f"{gmm.n_components} components ({gmm.covariance_type})"
                 + ("" if sample.shape[1] == 2 else ", first two principal axes"))
    names = getattr(gmm, "feature_names_in_", None)
    if sample.shape[1] == 2:
        ax.set_xlabel(str(names[0]) if names is not None else "feature 0")
        ax.set_ylabel(str(names[1]) if names is not None else "feature 1")
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.set_xlabel("first principal axis")
        ax.set_ylabel("second principal axis")
        ax.set_aspect("equal", adjustable="datalim")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colours[k],
                      label=f"component {k} (weight {gmm.weights_[k]:.2f})") for k in range(gmm.n_components)]
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="means; ellipses: 1 and 2 sigma"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    return ax
