"""The torch side of the data pipeline: FEDataset, normalizers, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fe_operators.data import FEDataset, FEFile, UnitGaussianNormalizer, split_indices

PROBLEM = "test_data_problems:SmallPoisson"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two small files: one input on CG1 (stacked) and inputs on CG1 + DG0 (dict)."""
    from fe_operators.data import generate_dataset

    folder = tmp_path_factory.mktemp("dataset")
    out = {}
    for diffusion in ("const", "dg0"):
        out[diffusion] = folder / f"{diffusion}.h5"
        generate_dataset(PROBLEM, "unitsquare:4", 12, out[diffusion], seed=1,
                         params={"diffusion": diffusion}, progress=False)
    return out


def test_normalizer_statistics_and_round_trip():
    x = torch.randn(50, 7, 3, dtype=torch.float64) * 3 + 2
    per_dof = UnitGaussianNormalizer.fit(x, per="dof")
    assert torch.allclose(per_dof.mean, x.mean(0)) and torch.allclose(per_dof.std, x.std(0, unbiased=False))
    glob = UnitGaussianNormalizer.fit(x, per="global")
    assert glob.mean.shape == (3,)
    assert torch.allclose(glob.mean, x.mean((0, 1))) and torch.allclose(glob.std, x.std((0, 1), unbiased=False))
    z = per_dof.encode(x)
    assert torch.allclose(z.mean(0), torch.zeros(7, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(per_dof.decode(z), x, atol=1e-12)
    again = UnitGaussianNormalizer.from_state_dict(per_dof.state_dict())
    assert torch.equal(again.encode(x), z)
    assert per_dof.encode(x.float()).dtype == torch.float32


def test_normalizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="per='dof' or per='global'"):
        UnitGaussianNormalizer.fit(torch.zeros(3, 4), per="cell")
    with pytest.raises(ValueError, match=r"\(batch, n_nodes"):
        UnitGaussianNormalizer.fit(torch.zeros(3))


def test_split_indices_are_disjoint_and_respect_the_mask():
    mask = np.ones(20, dtype=bool)
    mask[[3, 7]] = False
    train, val, test = split_indices(mask, (0.6, 0.2, 0.2), seed=4)
    together = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(together), np.flatnonzero(mask))
    assert all(np.array_equal(s, np.sort(s)) for s in (train, val, test))
    assert [len(s) for s in (train, val, test)] == [11, 3, 4]
    assert np.array_equal(split_indices(mask, (0.6, 0.2, 0.2), seed=4)[0], train)
    with pytest.raises(ValueError, match="summing to at most 1"):
        split_indices(10, (0.8, 0.5))


def test_dataset_stacks_inputs_on_one_space(files):
    f = FEFile(files["const"])
    ds = FEDataset(files["const"], dtype=torch.float64)
    assert ds.stacked and len(ds) == 12
    x, y = ds[5]
    inputs, output = f.read([5])
    assert x.shape == (25, 1) and y.shape == (25,)
    assert torch.equal(x[:, 0], torch.from_numpy(inputs["f"][0]))
    assert torch.equal(y, torch.from_numpy(output[0]))


def test_dataset_returns_a_dict_for_inputs_on_different_spaces(files):
    ds = FEDataset(files["dg0"], [2, 9], dtype=torch.float64, preload=True)
    assert not ds.stacked
    x, y = ds[1]
    inputs, output = FEFile(files["dg0"]).read([9])
    assert set(x) == {"f", "k"} and x["k"].shape == (32,)
    assert torch.equal(x["k"], torch.from_numpy(inputs["k"][0])) and torch.equal(y, torch.from_numpy(output[0]))


def test_normalizers_fitted_on_the_train_split_only(files):
    train, _ = split_indices(12, (0.75, 0.25), seed=0)
    x_norm, y_norm = FEDataset(files["dg0"], train).fit_normalizers(block=4)  # streamed in blocks
    inputs, output = FEFile(files["dg0"]).read(train)
    assert torch.allclose(x_norm["k"].mean, torch.from_numpy(inputs["k"].mean(0)), rtol=0, atol=1e-14)
    assert torch.allclose(y_norm.std, torch.from_numpy(output.std(0)), rtol=0, atol=1e-14)
    ds = FEDataset(files["dg0"], train, dtype=torch.float64)
    ys = y_norm.encode(torch.stack([ds[i][1] for i in range(len(ds))]))
    assert torch.allclose(y_norm.decode(ys), torch.from_numpy(output), atol=1e-12)


def test_dataloader_with_worker_processes(files):
    ds = FEDataset(files["const"])
    serial = list(torch.utils.data.DataLoader(ds, batch_size=5, num_workers=0))
    ds[0]  # a handle opened in the parent must not leak into the workers
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2))
    assert len(parallel) == 3
    for (xs, ys), (xp, yp) in zip(serial, parallel):
        assert xp.dtype == torch.float32 and torch.equal(xs, xp) and torch.equal(ys, yp)


def test_indices_that_are_not_valid_samples_are_refused(files):
    with pytest.raises(IndexError, match=r"in \[0, 12\)"):
        FEDataset(files["const"], [0, 12])
    with pytest.raises(IndexError, match="out of range"):
        FEDataset(files["const"])[12]


@pytest.mark.parametrize("preload", [True, False])
def test_non_finite_samples_are_refused_naming_sample_and_field(files, tmp_path, preload):
    import shutil

    import h5py

    from fe_operators.data.layout import GROUP
    from fe_operators.errors import NonFiniteError

    path = tmp_path / "nan.h5"
    shutil.copy(files["dg0"], path)
    with h5py.File(path, "a") as h5:
        k = h5[GROUP]["inputs/k"]
        row = k[7]
        row[[3, 5]] = [np.nan, np.inf]
        k[7] = row
    FEDataset(path, [0, 1, 2], preload=preload)  # the damaged sample not selected: fine
    with pytest.raises(NonFiniteError, match=r"nan\.h5: sample 7\b.*\b2 NaN.*inputs/k.*damaged"):
        FEDataset(path, preload=preload)
