"""Model files: an open format, round-trips exactly, refuses what is corrupted."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import COVARIANCE_TYPES, FITTED_ARRAYS, fit_quietly, make_data

import daskgmm
from daskgmm import GaussianMixture
from daskgmm.io.directories import ModelFileError


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_exact(tmp_path, covariance_type):
    X = make_data(n_samples=1000, n_components=3)
    frame = pd.DataFrame(X, columns=["x", "y", "z"])
    gmm = fit_quietly(GaussianMixture(3, covariance_type=covariance_type, random_state=0, chunk_rows=300), frame)
    gmm.save(tmp_path / "model")
    loaded = daskgmm.load(tmp_path / "model")
    assert isinstance(loaded, GaussianMixture)
    assert loaded.get_params()["covariance_type"] == covariance_type and loaded.chunk_rows == 300
    for name in FITTED_ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gmm, name))
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(gmm, name)
    np.testing.assert_array_equal(loaded.feature_names_in_, gmm.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), gmm.predict(frame))
    assert loaded.score(frame) == gmm.score(frame)
    # an open format: JSON and a plain NPZ, no pickles inside
    metadata = json.loads((tmp_path / "model" / "model.json").read_text())
    assert metadata["format"] == "daskgmm-model" and metadata["format_version"] == 1
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"weights_", "means_", "covariances_", "precisions_cholesky_"}


def test_a_checkpoint_path_parameter_is_saved_as_text(tmp_path):
    X = make_data(n_samples=500, n_components=2)
    gmm = fit_quietly(GaussianMixture(2, random_state=0, checkpoint=tmp_path / "fit.ckpt"), X)
    gmm.save(tmp_path / "m")
    assert daskgmm.load(tmp_path / "m").checkpoint == str(tmp_path / "fit.ckpt")


def test_saving_again_replaces_the_model_when_asked(tmp_path):
    X = make_data(n_samples=500, n_components=2)
    first = fit_quietly(GaussianMixture(2, random_state=0), X)
    second = fit_quietly(GaussianMixture(3, random_state=0), X)
    first.save(tmp_path / "m")
    with pytest.raises(ValueError, match="overwrite=True"):
        second.save(tmp_path / "m")
    second.save(tmp_path / "m", overwrite=True)
    assert daskgmm.load(tmp_path / "m").n_components == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging leftovers


def test_unfitted_model_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixture().save(tmp_path / "m")


@pytest.fixture
def saved(tmp_path):
    gmm = fit_quietly(GaussianMixture(2, random_state=0), make_data(n_samples=400, n_components=2))
    gmm.save(tmp_path / "m")
    return tmp_path / "m"


def test_truncated_arrays_are_reported(saved):
    data = (saved / "arrays.npz").read_bytes()
    (saved / "arrays.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="arrays.npz is corrupted or truncated"):
        daskgmm.load(saved)


def test_corrupted_json_is_reported(saved):
    (saved / "model.json").write_text('{"format": "daskgmm-model", ')
    with pytest.raises(ModelFileError, match="model.json is corrupted"):
        daskgmm.load(saved)


def test_pickled_arrays_are_never_loaded(saved):
    """An NPZ whose members need pickle (object arrays) is refused, not executed."""

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    np.savez(saved / "arrays.npz", weights_=np.array([Boom()], dtype=object))
    with pytest.raises(ModelFileError, match="corrupted"):
        daskgmm.load(saved)


def test_inconsistent_or_foreign_files_are_refused(saved, tmp_path):
    metadata = json.loads((saved / "model.json").read_text())
    metadata["params"]["n_components"] = 5
    metadata["params"]["covariance_type"] = "diag"
    (saved / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelFileError, match="inconsistent model file"):
        daskgmm.load(saved)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text('{"format": "something-else"}')
    with pytest.raises(ModelFileError, match="not a daskgmm-model directory"):
        daskgmm.load(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        daskgmm.load(tmp_path / "absent")
