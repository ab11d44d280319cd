"""``fe-operators train`` end to end on a small generated dataset, including SIGKILL + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from fe_operators.data import FEDataset, FEFile, split_indices
from fe_operators.errors import SpaceMismatchError
from fe_operators.cli.train import main_train
from fe_operators.train import MODEL_TYPES, ModelType, load_model, read_checkpoint
from fe_operators.train.losses import loss_for_file, relative_loss_for_file
from test_train_trainer import TINY_MODEL_SOURCE

#: Runs main_train in a fresh process; pauses forever before optimizer step PAUSE_AT_STEP
#: (after writing PAUSE_MARKER) so that the test can SIGKILL it at a known point.
KILLABLE_SCRIPT = '''
import os, sys, time
from pathlib import Path

from fe_operators.cli.train import main_train
from fe_operators.train import register_model, trainer

register_model("tiny", "fe_train_tiny:build")
pause_at = int(os.environ["PAUSE_AT_STEP"])
original = trainer.Trainer.train_one_batch


def train_one_batch(self, x, y):
    if self.state.step == pause_at:
        Path(os.environ["PAUSE_MARKER"]).write_text("paused")
        time.sleep(600)
    return original(self, x, y)


trainer.Trainer.train_one_batch = train_one_batch
sys.exit(main_train())
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two small Poisson datasets (4x4 and 3x3 meshes) and the tiny model module on sys.path."""
    from fe_operators.data import generate_dataset

    folder = tmp_path_factory.mktemp("train_cli")
    generate_dataset("poisson", "unitsquare:4", 12, folder / "p4.h5", seed=1, progress=False)
    generate_dataset("poisson", "unitsquare:3", 12, folder / "p3.h5", seed=1, progress=False)
    (folder / "fe_train_tiny.py").write_text(TINY_MODEL_SOURCE)
    (folder / "killable.py").write_text(KILLABLE_SCRIPT)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.fixture
def tiny_builder(monkeypatch):
    monkeypatch.setitem(MODEL_TYPES, "tiny", ModelType("fe_train_tiny:build"))


def write_config(path, data, out, data_options=None, **train):
    cfg = {
        "data": {"path": str(data), "split": [8, 2, 2], "seed": 3, **(data_options or {})},
        "model": {"type": "tiny", "width": 8, "dropout": 0.1},
        "train": {"epochs": 3, "batch_size": 2, "lr": 3e-3, "seed": 5, "threads": 1, "progress": False,
                  "metrics": ["rel_l2", "rel_h1"], "checkpoint_every": 3, **train},
        "out": {"dir": str(out)},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def untimed(rows):
    return [{k: v for k, v in r.items() if k not in ("epoch_time", "elapsed")} for r in rows]


def test_fe_loss_is_the_firedrake_norm_of_the_stored_dofs(env):
    import firedrake as fd

    f = FEFile(env / "p4.h5")
    _, u = f.read([0, 1])
    v = 1.1 * u + 0.3 * np.sin(np.arange(u.shape[1]))
    spaces = f.rebuild()
    (fu, fv) = spaces.to_functions("output", u), spaces.to_functions("output", v)
    for name, norm in (("rel_l2", lambda w: fd.assemble(fd.inner(w, w) * fd.dx)),
                       ("rel_h1", lambda w: fd.assemble((fd.inner(w, w) + fd.inner(fd.grad(w), fd.grad(w))) * fd.dx))):
        loss = relative_loss_for_file(f, name)
        loss.reduction = "none"
        got = loss(torch.from_numpy(v), torch.from_numpy(u)).numpy()
        want = [np.sqrt(norm(b - a) / norm(a)) for a, b in zip(fu, fv, strict=True)]
        assert np.allclose(got, want, rtol=1e-12, atol=0)


def test_scaled_l2_training_loss_through_the_run(env, tmp_path, tiny_builder, capsys):
    """train.loss scaled_l2: the run trains on the squared L2 error over the training split's mean squared
    L2 norm (a zero prediction of the train split scores exactly 1), logs it as the validation metric that
    picks best.pt beside rel_l2; without the train split, or under an unknown name, a clear error."""
    cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run", epochs=1, loss="scaled_l2",
                       metrics=["rel_l2"])
    assert main_train(["--config", str(cfg)]) == 0
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(doc["epochs"][0]) >= {"train_loss", "val_scaled_l2", "val_rel_l2"}
    file = FEFile(env / "p4.h5")
    train_idx, _, _ = split_indices(file.done, [8 / 12, 2 / 12, 2 / 12], 3)
    loss = loss_for_file(file, "scaled_l2", FEDataset(env / "p4.h5", train_idx, dtype=torch.float64))
    _, y = FEDataset(env / "p4.h5", train_idx, dtype=torch.float64).raw(np.arange(len(train_idx)))
    assert float(loss(torch.zeros_like(y), y)) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="needs the training split"):
        loss_for_file(file, "scaled_l2")
    with pytest.raises(ValueError, match="known: rel_l2, rel_h1, scaled_l2"):
        loss_for_file(file, "mse")


def test_run_folder_best_model_and_test_metrics(env, tmp_path, tiny_builder, capsys):
    cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run", epochs=2,
                       data_options={"normalize_inputs": "global", "normalize_output": "none"})
    assert main_train(["--config", str(cfg)]) == 0
    assert "completed: 2 epochs, 8 steps; best val_rel_l2" in capsys.readouterr().out
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.csv", "metrics.json", "best.pt", "last.pt"}
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["scheduler"]["name"] == "cosine" and resolved["model"] == {"type": "tiny", "width": 8,
                                                                                         "dropout": 0.1}
    doc = json.loads((run / "metrics.json").read_text())
    assert set(doc["epochs"][0]) >= {"train_loss", "val_rel_l2", "val_rel_h1", "lr"}
    assert set(doc["test"]) == {"rel_l2", "rel_h1"}
    # best.pt alone reproduces the test metric, in physical units
    best = load_model(run / "best.pt")
    assert best.model.output_normalizer is None and best.model.input_normalizer.mean.shape == (2,)  # channels f, g
    file = FEFile(env / "p4.h5")
    best.check_spaces(file.space_dicts)
    assert best.metadata["run"]["config"]["data"]["split"] == [8, 2, 2]
    assert read_checkpoint(run / "last.pt")["run"]["dataset"]["numbering"] == file.numbering
    _, _, test_idx = split_indices(file.done, [8 / 12, 2 / 12, 2 / 12], 3)
    x, y = FEDataset(env / "p4.h5", test_idx, dtype=torch.float32).raw(np.arange(2))
    rel = relative_loss_for_file(file, "rel_l2")(best.predict(x.float()), y.float())
    assert float(rel) == pytest.approx(doc["test"]["rel_l2"], rel=1e-6)
    with pytest.raises(SpaceMismatchError, match=r"output: n_cells 32 \(the checkpoint .*best\.pt\) vs 18"):
        best.check_spaces(FEFile(env / "p3.h5").space_dicts)


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(env, tmp_path, tiny_builder):
    reference = write_config(tmp_path / "ref.yaml", env / "p4.h5", tmp_path / "ref")
    assert main_train(["--config", str(reference)]) == 0

    cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run")
    marker = tmp_path / "paused"
    child_env = dict(os.environ, OMP_NUM_THREADS="1", PAUSE_AT_STEP="7", PAUSE_MARKER=str(marker),
                     PYTHONPATH=os.pathsep.join([str(env), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(env / "killable.py"), "--config", str(cfg)], env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5)[0].decode() if proc.poll() is not None else "timeout"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # killed in epoch 2 with 3 of its 4 batches done; last.pt is from step 6 (2 batches in)
    state = read_checkpoint(tmp_path / "run" / "last.pt")["training"]["trainer"]
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 6, 2)

    torch.manual_seed(1234)  # resumption must not depend on the state of this process
    assert main_train(["--config", str(cfg), "--resume"]) == 0
    a, b = load_model(tmp_path / "ref" / "last.pt"), load_model(tmp_path / "run" / "last.pt")
    wa = torch.cat([p.flatten() for p in a.model.state_dict().values()])
    wb = torch.cat([p.flatten() for p in b.model.state_dict().values()])
    assert float((wa - wb).norm() / wa.norm()) <= 1e-6
    ref_doc = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    run_doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert untimed(run_doc["epochs"]) == untimed(ref_doc["epochs"]) and len(run_doc["epochs"]) == 3
    assert run_doc["test"] == ref_doc["test"] and run_doc["best"] == ref_doc["best"]


def test_cli_errors_are_clear(env, tmp_path, tiny_builder, capsys, monkeypatch):
    cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run", epochs=1)
    assert main_train(["--config", str(cfg), "--resume"]) == 1
    assert "last.pt: no such file" in capsys.readouterr().err
    assert main_train(["--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main_train(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "out.dir:" in err and "already holds a run; pass --resume" in err
    # resuming with a changed trajectory-relevant key, or on other spaces
    write_config(tmp_path / "lr.yaml", env / "p4.h5", tmp_path / "run", epochs=2, lr=1e-2)
    assert main_train(["--config", str(tmp_path / "lr.yaml"), "--resume"]) == 2
    assert "train.lr: differs from the run being resumed" in capsys.readouterr().err
    write_config(tmp_path / "p3.yaml", env / "p3.h5", tmp_path / "run", epochs=2)
    assert main_train(["--config", str(tmp_path / "p3.yaml"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "do not match the run in" in err and "output: n_nodes 25" in err and "vs 16" in err
    # a corrupt checkpoint
    (tmp_path / "run" / "last.pt").write_bytes(b"\x80\x04garbage")
    assert main_train(["--config", str(cfg), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "last.pt:" in err and "truncated" in err
    # an unknown model type
    monkeypatch.delitem(MODEL_TYPES, "tiny")
    assert main_train(["--config", str(write_config(tmp_path / "m.yaml", env / "p4.h5", tmp_path / "m"))]) == 2
    err = capsys.readouterr().err
    assert "model.type:" in err and "'tiny'" in err
    # a missing dataset
    assert main_train(["--config", str(write_config(tmp_path / "d.yaml", tmp_path / "none.h5", tmp_path / "d"))]) == 1
    assert "no dataset file at" in capsys.readouterr().err


def test_train_threads_pins_torch_and_numba(env, tmp_path, tiny_builder):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    try:
        cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run", epochs=1)
        assert main_train(["--config", str(cfg)]) == 0
        assert (numba.get_num_threads(), torch.get_num_threads()) == (1, 1)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        torch.set_num_threads(torch_threads)


def test_non_finite_data_are_refused_by_train_and_evaluate(env, tmp_path, tiny_builder, capsys):
    import shutil

    import h5py

    from fe_operators.cli.main import main
    from fe_operators.data.layout import GROUP

    cfg = write_config(tmp_path / "run.yaml", env / "p4.h5", tmp_path / "run", epochs=1)
    assert main_train(["--config", str(cfg)]) == 0
    data = tmp_path / "nan.h5"
    shutil.copy(env / "p4.h5", data)
    with h5py.File(data, "a") as h5:
        out = h5[GROUP]["output"]
        row = out[4]
        row[0] = np.nan
        out[4] = row
    capsys.readouterr()
    bad = write_config(tmp_path / "bad.yaml", data, tmp_path / "bad", epochs=1)
    assert main_train(["--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "nan.h5: sample 4" in err and "NaN" in err and "output" in err and not (tmp_path / "bad").exists()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--split", "all"]) == 1
    err = capsys.readouterr().err
    assert "nan.h5: sample 4" in err and "NaN" in err and "output" in err
