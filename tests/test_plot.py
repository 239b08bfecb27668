"""The plots render (and are checked by eye in the issue notes)."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from conftest import fit_quietly, make_data  # noqa: E402

from daskgmm import GaussianMixture  # noqa: E402
from daskgmm.plot import plot_components, plot_convergence  # noqa: E402


@pytest.mark.parametrize("n_features, covariance_type", [(2, "full"), (2, "spherical"), (5, "diag"), (3, "tied")])
def test_components_and_convergence_render(tmp_path, n_features, covariance_type):
    X = make_data(n_samples=3000, n_features=n_features, n_components=3, seed=1)
    gmm = fit_quietly(GaussianMixture(3, covariance_type=covariance_type, random_state=0), X)
    ax = plot_components(gmm, X, max_points=1000)
    assert len(ax.patches) == 2 * 3  # 1- and 2-sigma ellipses per component
    assert ("principal axes" in ax.get_title()) == (n_features > 2)
    assert ax.get_xlabel() == ("feature 0" if n_features == 2 else "first principal axis") and ax.get_ylabel()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert [label.split(" (")[0] for label in labels[:3]] == ["component 0", "component 1", "component 2"]
    if n_features == 2:  # the regions reach the axes' edges
        low, high = ax.get_xlim()
        region_x = np.concatenate([p.vertices[:, 0] for c in ax.collections[:1] for p in c.get_paths()])
        assert region_x.min() <= low + 1e-9 and region_x.max() >= high - 1e-9
    ax.figure.savefig(tmp_path / "components.png")
    ax = plot_convergence(gmm)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), gmm.lower_bounds_)
    ax.figure.savefig(tmp_path / "convergence.png")
    assert (tmp_path / "components.png").stat().st_size > 5000


def test_plots_of_a_bayesian_mixture_name_its_bound(tmp_path):
    from daskgmm import BayesianGaussianMixture

    X = make_data(n_samples=600, n_features=2, n_components=3)
    model = fit_quietly(BayesianGaussianMixture(n_components=5, random_state=0), X)
    ax = plot_convergence(model)
    assert ax.get_ylabel() == "lower bound"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), model.lower_bounds_)
    plot_components(model, X).figure.savefig(tmp_path / "components.png")
    assert (tmp_path / "components.png").stat().st_size > 5000
