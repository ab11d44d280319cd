"""``fe-operators generate → train → evaluate`` on trajectories of the heat family (a rollout SPON).

The heat family has time-dependent Dirichlet data (``g = cos(3 t)`` on ``x = 0``), so an
exact boundary error of 0 at every step of the CLI's rollouts means the data of each step
are lifted, not carried over from the first state.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from fe_operators.cli.evaluate import main_evaluate
from fe_operators.cli.generate import main_generate
from fe_operators.cli.train import main_train

HEAT = ["--param", "boundary_value=1.0", "--param", "boundary_frequency=3.0", "--param", "dt=0.02", "--quiet"]


def _config(folder, data, out, **model):
    if "type" not in model:  # the run's model, with these keys changed
        model = {"type": "rollout_spon", "processor": "gnn", "width": 8, "depth": 2, "unroll": 2, "noise_std": 0.01,
                 **model}
    cfg = {"data": {"path": str(data), "split": [5, 2, 1]}, "model": model,
           "train": {"epochs": 3, "lr": 3e-3, "batch_size": 8, "threads": 1}, "out": {"dir": str(out)}}
    path = folder / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Heat trajectories on unitsquare:4 (8 x 11 states), a 3-epoch run, its CLI evaluation."""
    folder = tmp_path_factory.mktemp("rollout_cli")
    data = folder / "heat.h5"
    assert main_generate(["heat", "--mesh", "unitsquare:4", "--samples", "8", "--steps", "10", "--spinup", "2",
                          "--out", str(data), *HEAT]) == 0
    assert main_train(["--config", str(_config(folder, data, folder / "run"))]) == 0
    assert main_evaluate([str(folder / "run"), "--data", str(data)]) == 0
    return folder, data, folder / "run"


def test_train_writes_a_rollout_run(run):
    folder, data, run_dir = run
    from fe_operators.models.rollout import RolloutSPON
    from fe_operators.train import load_model

    for name in ("config.yaml", "metrics.csv", "metrics.json", "best.pt", "last.pt"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and metrics["best"]["metric"] == "val_rollout_rel_l2"
    assert 0 < metrics["test"]["rollout_rel_l2"] < 10  # best.pt on the one test trajectory
    loaded = load_model(run_dir / "best.pt")
    assert isinstance(loaded.network, RolloutSPON) and loaded.network.param_names == ("kappa", "amplitude",
                                                                                      "frequency")
    assert loaded.metadata["run"]["dataset"]["kind"] == "trajectories"


def test_evaluate_errors_per_step_match_firedrake(run, capsys):
    """rollout.json's step errors are Firedrake's relative L2 errors of the rollout; boundary error 0."""
    import firedrake as fd
    import torch

    from fe_operators.data import TrajectoryFile
    from fe_operators.train import load_model

    folder, data, run_dir = run
    out = run_dir / "eval-heat-test"
    report = json.loads((out / "rollout.json").read_text())
    assert report["summary"]["boundary_error"] == 0.0
    assert report["n_samples"] == 1 and len(report["times"]) == 11
    assert math.isclose(report["times"][1] - report["times"][0], 0.02)
    assert (out / "errors.png").stat().st_size > 0
    pvd = (out / "rollout.pvd").read_text()
    assert pvd.count("<DataSet") == 11 and len(list((out / "rollout").glob("*.vtu"))) == 11

    # the same rollout by hand, its errors with fd.errornorm
    file = TrajectoryFile(data)
    problem = file.rebuild_problem()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    from fe_operators.data import split_rows

    (test,) = split_rows(file, cfg["data"]["split"], cfg["data"]["seed"])[2]
    params, states = file.read([test])
    net = load_model(run_dir / "best.pt").network
    pred = net.rollout(torch.from_numpy(states[:, 0]), torch.from_numpy(params), 10,
                       boundary=torch.from_numpy(states)).numpy()[0]
    for j in (1, 5, 10):
        u, ref = problem.array_to_state(pred[j]), problem.array_to_state(states[0, j])
        want = fd.errornorm(ref, u, "L2") / fd.norm(ref, "L2")
        assert math.isclose(report["mean_errors"]["state"][j], want, rel_tol=1e-8), j
    # the Dirichlet data are g(x, t) = cos(3 t) at the problem's clock (spin-up of 2 steps first)
    times = problem.dt * (2 + np.arange(11))
    g = problem.boundary_values(dict(zip(file.param_names, params[0])), times)
    mask = net.layout.mask.numpy()
    assert mask.sum() == 5 and np.array_equal(pred[:, mask], g[:, mask])
    assert np.ptp(g[:, mask]) > 0.1  # really time-dependent


def test_evaluate_prints_steps_and_takes_fewer_steps(run, capsys):
    folder, data, run_dir = run
    capsys.readouterr()
    out = folder / "eval4"
    assert main_evaluate([str(run_dir), "--data", str(data), "--steps", "4", "--split", "all", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "state" in text and "persistence" in text and "boundary error" in text and "8 trajectories (all)" in text
    report = json.loads((out / "rollout.json").read_text())
    assert len(report["times"]) == 5 and report["summary"]["boundary_error"] == 0.0


def test_evaluate_rolls_on_past_the_horizon(run, capsys):
    """--steps past the stored 10: errors over the 10, then 4 more steps whose time-dependent
    Dirichlet values are the FE solver's at those times, bit for bit."""
    from fe_operators.data import TrajectoryFile
    from fe_operators.train import load_model

    folder, data, run_dir = run
    out = folder / "eval14"
    capsys.readouterr()
    assert main_evaluate([str(run_dir), "--data", str(data), "--steps", "14", "--split", "all", "--out", str(out)]) == 0
    assert "4 more steps past the stored horizon" in capsys.readouterr().out
    report = json.loads((out / "rollout.json").read_text())
    beyond = report["beyond_horizon"]
    assert len(report["times"]) == 11 and beyond["steps"] == 4 and beyond["boundary_error"] == 0.0
    assert np.allclose(beyond["times"], 0.02 * np.arange(10, 15))
    assert (out / "rollout_beyond.pvd").read_text().count("<DataSet") == 5
    # the FE solver's states 11..14 have the Dirichlet values the CLI's rollout used
    file = TrajectoryFile(data)
    problem = file.rebuild_problem()
    params, states = file.read([0])
    p = dict(zip(file.param_names, params[0]))
    longer = problem.trajectory(p, 14, spinup_steps=2)
    assert np.array_equal(longer[:11], states[0])
    from fe_operators.evaluation.rollout_run import _boundary_data

    mask = load_model(run_dir / "best.pt").network.layout.mask.numpy()
    boundary = _boundary_data(problem, file, params, states[:, -1], np.arange(10, 15))  # what the CLI imposed
    assert np.array_equal(boundary[0][:, mask], longer[10:, mask]) and np.ptp(longer[11:, mask]) > 0


def test_every_kth_state_trains_and_evaluates(run, tmp_path, capsys):
    """model.every: 2 trains on and rolls out with every other stored state (dt 0.04), the evaluation
    compares with those states and rolls on past the horizon with the Dirichlet data of the FE clock."""
    import torch

    from fe_operators.data import TrajectoryFile
    from fe_operators.evaluation.rollout_run import _boundary_data
    from fe_operators.train import load_model

    folder, data, _ = run
    out = tmp_path / "every2"
    assert main_train(["--config", str(_config(tmp_path, data, out, every=2))]) == 0
    assert main_evaluate([str(out), "--data", str(data), "--steps", "7", "--split", "all"]) == 0
    report = json.loads((out / "eval-heat-all" / "rollout.json").read_text())
    assert len(report["times"]) == 6 and np.allclose(report["times"], 0.04 * np.arange(6))
    assert report["summary"]["boundary_error"] == 0.0
    beyond = report["beyond_horizon"]
    assert beyond["steps"] == 2 and beyond["boundary_error"] == 0.0 and np.allclose(beyond["times"], [0.2, 0.24, 0.28])
    # the model's rollout by hand on every other state: the report's errors
    file = TrajectoryFile(data)
    problem = file.rebuild_problem()
    params, states = file.read(np.flatnonzero(file.done).tolist())
    net = load_model(out / "best.pt").network
    pred = net.rollout(torch.from_numpy(states[:, 0]), torch.from_numpy(params), 5,
                       boundary=torch.from_numpy(states[:, ::2])).numpy()
    from fe_operators.train.rollout import rollout_relative_errors, state_norm

    err = rollout_relative_errors(state_norm(problem), torch.from_numpy(pred), torch.from_numpy(states[:, ::2]))
    assert math.isclose(report["mean_errors"]["state"][5], float(err[:, 5].mean()), rel_tol=1e-9)
    # past the horizon: the data at stored steps 10, 12, 14 of the FE clock
    boundary = _boundary_data(problem, file, params, states[:, -1], np.arange(5, 8) * 2)
    longer = problem.trajectory(dict(zip(file.param_names, params[0])), 14, spinup_steps=2)
    mask = net.layout.mask.numpy()
    assert np.array_equal(boundary[0][:, mask], longer[10::2, mask])


def test_heat_rebuilds_from_its_description(run):
    """The file's description rebuilds the family (no callables stored); custom callables are refused by name."""
    import firedrake as fd

    from fe_operators.data import TrajectoryFile
    from fe_operators.problems import FAMILIES, load_problem
    from fe_operators.problems.heat import HeatEquation

    folder, data, _ = run
    assert "heat" in FAMILIES
    file = TrajectoryFile(data)
    params = file.provenance["params"]
    assert not {"source", "boundary", "initial"} & set(params) and params["boundary_frequency"] == 3.0
    problem = file.rebuild_problem()
    p = dict(zip(file.param_names, file.read([0])[0][0]))
    assert np.array_equal(problem.trajectory(p, 10, spinup_steps=2), file.read([0])[1][0])
    custom = HeatEquation(fd.UnitSquareMesh(2, 2), source=lambda x, t, q: q["amplitude"] * x[0])
    assert custom.params["source"] == "custom"
    with pytest.raises(ValueError, match="custom source"):
        load_problem("heat", "unitsquare:2", custom.params)
    assert load_problem("heat", "unitsquare:2", {"source": "default"}).params.get("source") is None


def test_resume_continues_the_rollout_run(run, tmp_path):
    folder, data, run_dir = run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = _config(tmp_path, data, copy)
    text = yaml.safe_load(config.read_text())
    text["train"]["epochs"] = 4
    config.write_text(yaml.safe_dump(text))
    assert main_train(["--config", str(config), "--resume"]) == 0
    assert len(json.loads((copy / "metrics.json").read_text())["epochs"]) == 4


@pytest.mark.parametrize("model, key", [
    ({"type": "spon", "processor": "gnn", "width": 8}, "model.type"),
    ({"hidden": 4}, "model.hidden"),
    ({"unroll": 11}, "model.unroll"),
    ({"loss": "h2"}, "model.loss"),
    ({"noise_std": -1.0}, "model.noise_std"),
    ({"every": 0}, "model.every"),
    ({"every": 11}, "model.every"),         # one state left of the 11 stored
    ({"every": 6}, "model.unroll"),         # 2 states left: no room for 2 unrolled steps
])
def test_train_refuses_bad_rollout_keys(run, tmp_path, capsys, model, key):
    folder, data, _ = run
    capsys.readouterr()
    assert main_train(["--config", str(_config(tmp_path, data, tmp_path / "bad", **model))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err, err
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_mismatches_are_one_line(run, tmp_path, capsys):
    """Steady model on trajectories and back, another mesh, too many steps: one line each, naming the fix."""
    from fe_operators.data import generate_dataset

    folder, data, run_dir = run
    steady = tmp_path / "poisson.h5"
    generate_dataset("poisson", "unitsquare:3", 6, steady, seed=1, progress=False)
    capsys.readouterr()
    # rollout_spon on steady data
    assert main_train(["--config", str(_config(tmp_path, steady, tmp_path / "r1"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.type" in err and "steady" in err
    # a steady run evaluated on trajectories, and the rollout run on steady data
    cfg = {"data": {"path": str(steady), "split": [4, 1, 1]},
           "model": {"type": "spon", "processor": "gnn", "width": 4, "depth": 1},
           "train": {"epochs": 1, "threads": 1}, "out": {"dir": str(tmp_path / "steady")}}
    (tmp_path / "steady.yaml").write_text(yaml.safe_dump(cfg))
    assert main_train(["--config", str(tmp_path / "steady.yaml")]) == 0
    capsys.readouterr()
    assert main_evaluate([str(tmp_path / "steady"), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steady model" in err and "rollout_spon" in err
    assert main_evaluate([str(run_dir), "--data", str(steady)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rollout surrogate" in err
    # --steps not positive, or on steady data
    assert main_evaluate([str(run_dir), "--data", str(data), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps must be a positive" in err
    assert main_evaluate([str(tmp_path / "steady"), "--data", str(steady), "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps is for trajectory files" in err
    # trajectories of another mesh
    other = tmp_path / "heat3.h5"
    assert main_generate(["heat", "--mesh", "unitsquare:3", "--samples", "2", "--steps", "10",
                          "--out", str(other), *HEAT]) == 0
    capsys.readouterr()
    assert main_evaluate([str(run_dir), "--data", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "25" in err and "16" in err and "training mesh" in err


MY_HEAT = '''
from fe_operators.problems.heat import HeatEquation


class MyHeat(HeatEquation):
    """A family of the user's own (not registered)."""

    name = "my_heat"
'''


def test_own_family_needs_problem_flag(tmp_path, capsys, monkeypatch):
    """As for steady data: a stored module:Class is imported only when --problem names it."""
    (tmp_path / "my_heat_mod.py").write_text(MY_HEAT)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "mine.h5"
    assert main_generate(["my_heat_mod:MyHeat", "--mesh", "unitsquare:3", "--samples", "4", "--steps", "4",
                          "--out", str(data), "--quiet"]) == 0
    config = _config(tmp_path, data, tmp_path / "mine", width=4, depth=1, unroll=1)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["split"] = [2, 1, 1]
    cfg["train"]["epochs"] = 1
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main_train(["--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--problem my_heat_mod:MyHeat" in err
    assert main_train(["--config", str(config), "--problem", "my_heat_mod:MyHeat"]) == 0
    capsys.readouterr()
    assert main_evaluate([str(tmp_path / "mine"), "--data", str(data)]) != 0
    assert "--problem my_heat_mod:MyHeat" in capsys.readouterr().err
    assert main_evaluate([str(tmp_path / "mine"), "--data", str(data), "--problem", "my_heat_mod:MyHeat"]) == 0
    report = json.loads((tmp_path / "mine" / "eval-mine-test" / "rollout.json").read_text())
    assert report["summary"]["boundary_error"] == 0.0
