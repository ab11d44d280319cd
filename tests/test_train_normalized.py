"""One module from training to loading: the normalizers are part of the model.

A SPON between its normalizers (a ``NormalizedModel``) is trained by the Trainer,
checkpointed, loaded and applied through ``load_model``, ``predict`` and format-1
checkpoints (normalizers stored beside the model): every path gives the trainer's outputs
bit for bit, with the Dirichlet DOFs equal to the physical boundary data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fe_operators.data import FEDataset, FEFile, split_indices
from fe_operators.models import NormalizedModel, SPON, predict, spon_for_problem
from fe_operators.train import TrainSection, Trainer, load_model, read_checkpoint
from fe_operators.train.losses import relative_loss_for_file

GNN = dict(width=8, depth=1, hops=1, coarse_cells=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Poisson (inputs f, g on one space: stacked) and SmallPoisson with k on DG0 (inputs by name)."""
    from fe_operators.data.generate import generate_dataset

    folder = tmp_path_factory.mktemp("normalized")
    generate_dataset("poisson", "unitsquare:4", 10, folder / "stacked.h5", seed=1, progress=False)
    generate_dataset("test_data_problems:SmallPoisson", "unitsquare:4", 10, folder / "by_name.h5", seed=1,
                     params={"diffusion": "dg0"}, progress=False)
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


def as_format_1(path, out):
    """Rewrite a format-2 checkpoint in the format-1 layout (normalizers beside the network)."""
    data = read_checkpoint(path)
    model = data["model"]
    state = model.pop("state_dict")
    layout = model.pop("normalizers")
    model["state_dict"] = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    normalizers = {}
    for side in ("input", "output"):
        prefix = f"{side}_normalizer."
        if layout[side] is None:
            normalizers[side] = None
        elif layout[side] == "single":
            normalizers[side] = {"type": "single",
                                 "state": {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}}
        else:
            normalizers[side] = {"type": "by_name", "state": {
                name: {s: state[f"{prefix}{name}.{s}"] for s in ("mean", "std", "eps")} for name in layout[side]}}
    data.update(format_version=1, normalizers=normalizers)
    torch.save(data, out)
    return out


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


@pytest.mark.parametrize("name, layout", [("stacked", "single"), ("by_name", ["f", "k"])])
def test_format_1_checkpoints_load_and_resume(files, tmp_path, name, layout):
    path = files / f"{name}.h5"
    trainer = make_trainer(path, tmp_path / "run")
    trainer.fit()
    assert trainer.model.layout["input"] == layout
    old = as_format_1(tmp_path / "run" / "last.pt", tmp_path / "old.pt")
    assert torch.load(old, weights_only=True)["format_version"] == 1
    loaded = load_model(old)
    assert loaded.metadata["format_version"] == 1 and loaded.model.layout["input"] == layout
    x, _ = val_batch(trainer)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), trainer.model(x))
    # resuming from the format-1 last.pt continues exactly as from the format-2 one
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "last.pt").write_bytes(old.read_bytes())
    a, b = make_trainer(path, tmp_path / "run", epochs=2), make_trainer(path, tmp_path / "run1", epochs=2)
    a.fit(resume=True)
    b.fit(resume=True)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        dense = (v if v.layout == torch.strided else v.to_dense() for v in (va, vb))
        assert ka == kb and torch.equal(*dense), ka
