"""The Trainer on synthetic data: best/last selection, exact resume, load_model, errors."""

from __future__ import annotations

import json
import math
import sys
import time

import pytest
import torch

from fe_operators.data import UnitGaussianNormalizer
from fe_operators.errors import SpaceMismatchError
from fe_operators.models import NormalizedModel
from fe_operators.train import (
    CheckpointError, RunDirectoryError, SchedulerSection, Trainer, TrainingError, TrainSection, load_model,
    read_checkpoint,
)
from fe_operators.train.optim import lr_factor

#: A checkpointable model in a module of its own (written under tmp_path, put on sys.path):
#: checkpoints name it "fe_train_tiny:TinyMLP" and rebuild it without this file.
TINY_MODEL_SOURCE = '''
import math
import torch

from fe_operators.models import register_model_class


@register_model_class
class TinyMLP(torch.nn.Module):
    """Flatten -> Linear -> tanh -> dropout -> Linear, reshaped to the output DOF shape."""

    def __init__(self, n_in, out_shape, width=16, dropout=0.0):
        super().__init__()
        self._config = {"n_in": n_in, "out_shape": list(out_shape), "width": width, "dropout": dropout}
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(n_in, width), torch.nn.Tanh(), torch.nn.Dropout(dropout),
            torch.nn.Linear(width, math.prod(out_shape)))

    @property
    def config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def forward(self, x):
        return self.net(x).reshape(x.shape[0], *self._config["out_shape"])


def build(section, dataset):
    """Model builder registered with fe_operators.train.register_model."""
    f = dataset.file
    n_in = sum(math.prod(f.dof_shape("inputs/" + n)) for n in dataset.input_names)
    return TinyMLP(n_in, f.dof_shape("output"), **section.options)
'''

SPACES = {"inputs/a": {"family": "Lagrange", "degree": 1, "cell": "triangle", "value_shape": [], "n_nodes": 6,
                       "ncomp": 1, "gdim": 2, "n_cells": 4}}
SPACES["output"] = dict(SPACES["inputs/a"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The module ``fe_train_tiny`` (importable for the duration of this test module)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    (folder / "fe_train_tiny.py").write_text(TINY_MODEL_SOURCE)
    sys.path.insert(0, str(folder))
    import fe_train_tiny

    yield fe_train_tiny
    sys.path.remove(str(folder))


def rel_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean relative Euclidean error (a stand-in for an FE RelativeLoss)."""
    return ((pred - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)).mean()


def data(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """``y = sin(x_0) + x_1^2 + 2`` per node, ``x`` of shape (n, 6, 2)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 2, generator=g)
    return torch.utils.data.TensorDataset(x, torch.sin(x[..., 0]) + x[..., 1] ** 2 + 2.0)


def make_trainer(tiny, run_dir, *, epochs=3, seed=0, dropout=0.1, spaces=SPACES, cls=Trainer, **kw) -> Trainer:
    torch.manual_seed(seed)
    model = tiny.TinyMLP(12, (6,), width=8, dropout=dropout)
    train, val = data(22, 1), data(8, 2)
    settings = TrainSection(epochs=epochs, batch_size=kw.pop("batch_size", 4), lr=1e-2, seed=seed,
                            progress=False, scheduler=kw.pop("scheduler", SchedulerSection(warmup_steps=3)),
                            checkpoint_every=kw.pop("checkpoint_every", 0), time_budget=kw.pop("time_budget", None),
                            restore_best=kw.pop("restore_best", True))
    x_norm = UnitGaussianNormalizer.fit(train.tensors[0])
    y_norm = UnitGaussianNormalizer.fit(train.tensors[1])
    return cls(NormalizedModel(model, x_norm, y_norm), rel_l2, train, kw.pop("val", val), run_dir=run_dir,
               settings=settings, spaces=spaces, **kw)


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_fit_writes_run_files_and_loss_is_in_physical_units(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, epochs=2)
    result = trainer.fit()
    assert result.stopped == "completed" and result.epochs == 2 and result.step == 2 * 6
    assert {p.name for p in tmp_path.iterdir()} >= {"last.pt", "best.pt", "metrics.csv", "metrics.json"}
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in doc["epochs"]] == [1, 2]
    assert set(doc["epochs"][0]) == {"epoch", "step", "train_loss", "val_loss", "lr", "epoch_time", "elapsed"}
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,train_loss,val_loss")
    # validation metric = relative error of the *decoded* output against the raw target
    x, y = trainer.val_data.tensors
    trainer.model.eval()
    with torch.no_grad():
        model = trainer.model
        direct = rel_l2(model.output_normalizer.decode(model.network(model.input_normalizer.encode(x))), y)
    assert doc["epochs"][-1]["val_loss"] == pytest.approx(float(direct), rel=1e-6)


def test_load_model_reproduces_outputs_exactly(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, epochs=2)
    trainer.fit()
    loaded = load_model(tmp_path / "last.pt")
    assert loaded.model_class == "fe_train_tiny:TinyMLP" and loaded.metadata["epoch"] == 2
    assert not loaded.model.training and loaded.spaces == SPACES
    x = trainer.val_data.tensors[0]
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), trainer.forward(x))
    assert torch.equal(loaded.model.output_normalizer.mean, trainer.model.output_normalizer.mean)
    bad = {k: dict(v, n_nodes=7) for k, v in SPACES.items()}
    with pytest.raises(SpaceMismatchError, match=r"output: n_nodes 6 \(the checkpoint .*\) vs 7 \(the dataset\)"):
        loaded.check_spaces(bad)


class Scripted:
    """A validation metric with prescribed values, one per evaluation (one val batch)."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, pred, target):
        return torch.tensor(self.values.pop(0))


def test_best_checkpoint_is_the_epoch_with_the_lowest_val_metric(tiny, tmp_path):
    none = SchedulerSection(name="none")
    trainer = make_trainer(tiny, tmp_path / "a", epochs=3, scheduler=none, batch_size=8,
                           metrics={"score": Scripted([0.5, 0.2, 0.4]), "loss": rel_l2})
    result = trainer.fit()
    assert result.best == {"metric": "val_score", "value": pytest.approx(0.2), "epoch": 2}
    best, last = load_model(tmp_path / "a" / "best.pt"), load_model(tmp_path / "a" / "last.pt")
    assert best.metadata["epoch"] == 2 and last.metadata["epoch"] == 3
    assert read_checkpoint(tmp_path / "a" / "best.pt")["training"] is None
    # best.pt holds exactly the weights after epoch 2: a 2-epoch run ends there
    twin = make_trainer(tiny, tmp_path / "b", epochs=2, scheduler=none, batch_size=8, restore_best=False)
    twin.fit()
    assert torch.equal(weights(best.model), weights(twin.model))
    assert not torch.equal(weights(best.model), weights(last.model))


def test_resume_after_time_budget_stops_matches_an_uninterrupted_run(tiny, tmp_path):
    reference = make_trainer(tiny, tmp_path / "ref", restore_best=False)  # compare the last weights
    reference.fit()
    stops = 0
    trainer = make_trainer(tiny, tmp_path / "cut", time_budget=1e-9, restore_best=False)
    result = trainer.fit()
    while result.stopped == "time_budget":  # at least one batch per invocation
        stops += 1
        ckpt = read_checkpoint(tmp_path / "cut" / "last.pt")["training"]["trainer"]
        assert ckpt["batches_done"] > 0 or ckpt["epoch"] > 0
        trainer = make_trainer(tiny, tmp_path / "cut", time_budget=1e-9, seed=0, restore_best=False)
        torch.manual_seed(123)  # whatever the new process would do: resume restores every RNG
        result = trainer.fit(resume=True)
    assert stops >= 10
    a, b = weights(reference.model), weights(trainer.model)
    assert torch.equal(a, b), float((a - b).norm() / a.norm())
    untimed = [[{k: v for k, v in r.items() if k not in ("epoch_time", "elapsed")} for r in rows]
               for rows in (result.history, reference.log.rows)]
    assert untimed[0] == untimed[1]


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(tiny, tmp_path):
    with pytest.raises(CheckpointError, match=r"last\.pt: no checkpoint to resume from"):
        make_trainer(tiny, tmp_path, epochs=1).fit(resume=True)
    make_trainer(tiny, tmp_path, epochs=1).fit()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        make_trainer(tiny, tmp_path, epochs=1).fit()


def test_resume_rejects_other_spaces_and_other_models(tiny, tmp_path):
    make_trainer(tiny, tmp_path, epochs=1).fit()
    other = {k: dict(v, n_nodes=9) for k, v in SPACES.items()}
    with pytest.raises(SpaceMismatchError, match=r"inputs/a: n_nodes 6 \(the checkpoint .*last\.pt\) vs 9"):
        make_trainer(tiny, tmp_path, epochs=2, spaces=other).fit(resume=True)
    with pytest.raises(CheckpointError, match=r"holds a model with config .*\"dropout\": 0\.1"):
        make_trainer(tiny, tmp_path, epochs=2, dropout=0.3).fit(resume=True)
    best_only = tmp_path / "best.pt"
    (tmp_path / "last.pt").write_bytes(best_only.read_bytes())
    with pytest.raises(CheckpointError, match="holds no training state"):
        make_trainer(tiny, tmp_path, epochs=2).fit(resume=True)


def test_bad_models_and_outputs_fail_clearly(tiny, tmp_path):
    class Local(tiny.TinyMLP):
        pass

    with pytest.raises(TypeError, match="cannot be re-imported"):
        Trainer(Local(12, (6,)), rel_l2, data(4, 0), run_dir=tmp_path)
    with pytest.raises(TypeError, match="config.*from_config"):
        Trainer(torch.nn.Linear(2, 2), rel_l2, data(4, 0), run_dir=tmp_path)
    wrong = tiny.TinyMLP(12, (5,))
    trainer = Trainer(wrong, rel_l2, data(4, 0), run_dir=tmp_path / "w", settings=TrainSection(progress=False))
    with pytest.raises(SpaceMismatchError, match=r"shape \(4, 5\).*targets.*shape \(4, 6\)"):
        trainer.fit()
    nan_data = data(4, 0)
    nan_data.tensors[1][0, 0] = float("nan")
    trainer = Trainer(tiny.TinyMLP(12, (6,)), rel_l2, nan_data, run_dir=tmp_path / "n",
                      settings=TrainSection(progress=False))
    with pytest.raises(TrainingError, match=r"epoch 1, step 1: the loss is nan"):
        trainer.fit()


def test_learning_rate_schedules():
    cos = lr_factor(SchedulerSection(name="cosine", warmup_steps=4, min_lr=1e-4), 1e-3, 10, 104)
    assert [cos(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert cos(4) == pytest.approx(1.0) and cos(54) == pytest.approx(0.55) and cos(104) == pytest.approx(0.1)
    step = lr_factor(SchedulerSection(name="step", step_epochs=2, gamma=0.5), 1e-3, 10, 100)
    assert [step(s) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(SchedulerSection(name="none"), 1e-3, 10, 100)(77) == 1.0
    assert math.isclose(cos(10**6), 0.1)


def test_one_line_per_epoch_without_progress_bars(tiny, tmp_path, capsys):
    none = SchedulerSection(name="none")
    trainer = make_trainer(tiny, tmp_path, epochs=3, scheduler=none, batch_size=8,
                           metrics={"score": Scripted([0.5, 0.2, 0.4]), "loss": rel_l2})
    trainer.fit()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    rows = trainer.log.rows
    for line, row, star in zip(lines, rows, ("*", "*", "")):
        assert line == (f"epoch {row['epoch']}/3: train_loss {row['train_loss']:.3e}, val_score "
                        f"{row['val_score']:.3e}{star}, val_loss {row['val_loss']:.3e} ({row['epoch_time']:.1f} s)")
    assert lines[3] == f"restored the weights of epoch 2 (val_score 2.000e-01, the best) from {tmp_path / 'best.pt'}"


def state_tensors(state: dict) -> list[torch.Tensor]:
    return [state[k] for k in sorted(state)]


def test_fit_restores_the_best_validation_weights(tiny, tmp_path):
    none = SchedulerSection(name="none")
    trainer = make_trainer(tiny, tmp_path / "a", epochs=3, scheduler=none, batch_size=8,
                           metrics={"score": Scripted([0.5, 0.2, 0.4]), "loss": rel_l2})
    result = trainer.fit()
    assert result.restored == {"metric": "val_score", "value": pytest.approx(0.2), "epoch": 2}
    best = read_checkpoint(tmp_path / "a" / "best.pt")["model"]["state_dict"]
    last = read_checkpoint(tmp_path / "a" / "last.pt")["model"]["state_dict"]
    now = trainer.model.state_dict()
    assert sorted(now) == sorted(best)
    for k in best:
        assert torch.equal(now[k], best[k]), k
    assert any(not torch.equal(now[k], last[k]) for k in last)  # epoch 3 moved the weights
    # off: the model keeps the last weights
    off = make_trainer(tiny, tmp_path / "b", epochs=3, scheduler=none, batch_size=8, restore_best=False,
                       metrics={"score": Scripted([0.5, 0.2, 0.4]), "loss": rel_l2})
    assert off.fit().restored is None
    last = read_checkpoint(tmp_path / "b" / "last.pt")["model"]["state_dict"]
    assert all(torch.equal(off.model.state_dict()[k], last[k]) for k in last)
    # no validation data: nothing to restore
    plain = make_trainer(tiny, tmp_path / "c", epochs=1, val=None)
    assert plain.fit().restored is None and not (tmp_path / "c" / "best.pt").exists()


class ClockedTrainer(Trainer):
    """A Trainer on a deterministic clock: every batch takes exactly ``seconds_per_batch``.

    Records the learning rate after each step; ``stop_at`` raises KeyboardInterrupt before
    that step (a killed run).
    """

    seconds_per_batch = 1.0
    stop_at: int | None = None

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.now = 0.0
        self.clock = lambda: self.now
        self.lrs: list[float] = []

    def train_one_batch(self, x, y):
        if self.stop_at is not None and self.state.step + 1 == self.stop_at:
            raise KeyboardInterrupt
        self.now += self.seconds_per_batch
        loss = super().train_one_batch(x, y)
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return loss


def budgeted(budget=10.0, min_lr=1e-4, warmup=0):
    return dict(epochs=1000, time_budget=budget, cls=ClockedTrainer,
                scheduler=SchedulerSection(length="time_budget", min_lr=min_lr, warmup_steps=warmup))


def test_time_budget_schedule_ends_at_min_lr_when_the_budget_runs_out(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path / "a", **budgeted(10.0))  # 10 batches of 1 s; 6 batches per epoch
    result = trainer.fit()
    assert result.stopped == "time_budget" and result.step == 10
    # the budget ends the run: the epoch it cut short is validated and logged (its weights may be the best)
    assert result.epochs == 2 and [r["step"] for r in result.history] == [6, 10]
    # progress = elapsed / budget after each step, so step k sets lr(k / 10)
    expected = [1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(1, 11)]
    assert trainer.lrs == pytest.approx(expected, rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-12)
    # the step count's progress counts too: a run that ends on epochs first also ends at min_lr
    short = make_trainer(tiny, tmp_path / "b", **{**budgeted(1e6), "epochs": 2})
    assert short.fit().stopped == "completed" and short.lrs[-1] == pytest.approx(1e-4, rel=1e-12)
    # a spent run does nothing more when resumed
    again = make_trainer(tiny, tmp_path / "a", **budgeted(10.0))
    assert again.fit(resume=True).step == 10 and again.lrs == []


def test_time_budget_schedule_on_the_real_clock_reaches_min_lr_within_a_step(tiny, tmp_path):
    kw = budgeted(1.0)
    kw.pop("cls")
    trainer = make_trainer(tiny, tmp_path, **kw)
    t0 = time.monotonic()
    result = trainer.fit()
    assert result.stopped == "time_budget" and 1.0 <= trainer.state.elapsed < time.monotonic() - t0
    steps = result.step
    assert steps > 20
    # the last rate was set at progress above 1 - (one step + one validation) / budget; generous bound
    factor = lr_factor(SchedulerSection(min_lr=1e-4), 1e-2, 6, 1000)
    assert trainer.optimizer.param_groups[0]["lr"] <= 1e-2 * factor(int(0.9 * 1000))


def test_resume_mid_budget_matches_a_straight_run_with_a_time_budget_schedule(tiny, tmp_path):
    kw = {**budgeted(15.0, warmup=2), "restore_best": False, "checkpoint_every": 1}
    reference = make_trainer(tiny, tmp_path / "ref", **kw)
    ref = reference.fit()
    assert ref.step == 15 and ref.epochs == 3
    cut = make_trainer(tiny, tmp_path / "cut", **kw)
    cut.stop_at = 9  # killed in epoch 2, after 8 steps (last.pt written at each step)
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    resumed = make_trainer(tiny, tmp_path / "cut", **kw)
    torch.manual_seed(321)
    result = resumed.fit(resume=True)
    assert result.step == 15 and result.stopped == "time_budget"
    assert resumed.lrs == reference.lrs[8:]
    assert torch.equal(weights(resumed.model), weights(reference.model))
    assert [r["val_loss"] for r in result.history] == [r["val_loss"] for r in ref.history]


def test_time_budget_run_validates_the_epoch_it_cuts_short(tiny, tmp_path, capsys):
    scores = Scripted([0.5, 0.5, 0.1, 0.1])
    trainer = make_trainer(tiny, tmp_path, **budgeted(10.0), metrics={"score": scores, "loss": rel_l2})
    result = trainer.fit()  # 6 + 4 steps: the budget cuts epoch 2 short; it is validated (2 val batches each)
    assert result.restored == {"metric": "val_score", "value": pytest.approx(0.1), "epoch": 2}
    last = read_checkpoint(tmp_path / "last.pt")["model"]["state_dict"]
    assert all(torch.equal(trainer.model.state_dict()[k], last[k]) for k in last)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch 1 (60% of the budget): train_loss ")
    assert lines[1].startswith("epoch 2 (100% of the budget): train_loss ")
