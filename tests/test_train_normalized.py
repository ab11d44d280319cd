"""One module from training to loading: the normalizers are part of the model.

A SPON between its normalizers (a ``NormalizedModel``) is trained by the Trainer,
checkpointed, loaded and applied through ``load_model`` and ``predict``: every path gives
the trainer's outputs bit for bit, with the Dirichlet DOFs equal to the physical boundary
data.  Checkpoints of the pre-release format 1 (normalizers stored beside the model) are
refused, on loading and on resuming, with a message that says to retrain.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fe_operators.data import FEDataset, FEFile, split_indices
from fe_operators.errors import CheckpointError
from fe_operators.models import NormalizedModel, SPON, predict, spon_for_problem
from fe_operators.train import TrainSection, Trainer, load_model, read_checkpoint
from fe_operators.train.losses import relative_loss_for_file

GNN = dict(width=8, depth=1, hops=1, coarse_cells=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Poisson (inputs f, g on one space: stacked)."""
    from fe_operators.data import generate_dataset

    folder = tmp_path_factory.mktemp("normalized")
    generate_dataset("poisson", "unitsquare:4", 10, folder / "stacked.h5", seed=1, progress=False)
    return folder


def make_trainer(path, run_dir, epochs=1) -> Trainer:
    file = FEFile(path)
    train_idx, val_idx = split_indices(file.done, (0.6, 0.4), seed=0)
    train, val = (FEDataset(path, idx, dtype=torch.float64, preload=True) for idx in (train_idx, val_idx))
    x_norm, y_norm = train.fit_normalizers(per="dof")
    torch.manual_seed(0)
    network = spon_for_problem(file.rebuild_problem(), "gnn", dtype=torch.float64, **GNN)
    settings = TrainSection(epochs=epochs, batch_size=2, lr=1e-2, seed=0, progress=False)
    return Trainer(NormalizedModel(network, x_norm, y_norm), relative_loss_for_file(file, "rel_l2"), train, val,
                   run_dir=run_dir, settings=settings, spaces=file.space_dicts)


def val_batch(trainer):
    return trainer.val_data.raw(np.arange(len(trainer.val_data)))


def test_loaded_model_reproduces_the_trainer_bit_for_bit(files, tmp_path):
    trainer = make_trainer(files / "stacked.h5", tmp_path)
    trainer.fit()
    x, y = val_batch(trainer)
    assert isinstance(x, torch.Tensor) and trainer.model.layout == {"input": "single", "output": "single"}
    loaded = load_model(tmp_path / "last.pt")
    assert isinstance(loaded.network, SPON) and loaded.model_class == "fe_operators.models.spon:SPON"
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(x)
        assert torch.equal(loaded.model(x), expected)
    assert torch.equal(loaded.predict(x), expected)
    # the Dirichlet DOFs are the physical boundary data g (the network saw encoded inputs)
    mask = loaded.network.context.mask[:, 0]
    assert mask.any() and torch.equal(expected[:, mask], x[:, mask, 1].to(torch.float64))
    # predict (Functions out) applies the same module
    V = FEFile(files / "stacked.h5").rebuild_problem().output_space
    got = predict(loaded.model, x, V)
    assert torch.equal(torch.stack([torch.from_numpy(f.dat.data_ro.copy()) for f in got]), expected)


def test_format_1_checkpoints_are_refused_on_load_and_resume(files, tmp_path):
    path = files / "stacked.h5"
    make_trainer(path, tmp_path / "run").fit()
    data = read_checkpoint(tmp_path / "run" / "last.pt")
    normalizers = data["model"].pop("normalizers")  # format 1 kept them beside the model entry
    (tmp_path / "run1").mkdir()
    old = tmp_path / "run1" / "last.pt"
    torch.save(dict(data, format_version=1, normalizers=normalizers), old)
    with pytest.raises(CheckpointError, match="format version 1 .*retrain the model") as info:
        load_model(old)
    assert info.value.path == str(old)
    with pytest.raises(CheckpointError, match="format version 1 .*retrain the model") as info:
        make_trainer(path, tmp_path / "run1", epochs=2).fit(resume=True)
    assert info.value.path == str(old)
