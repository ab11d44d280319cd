"""SPON end to end through the command line: generate -> train -> evaluate, and bad input.

Tiny Darcy data on a 6x6 unit square; the runs train a few steps only, so the tests check
the pipeline (finite FE-norm errors, exact boundary values, files written, clear errors),
not accuracy (tests/test_accuracy.py, the demos and ``make demo`` do that).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from fe_operators.cli.main import main

SPLIT = [16, 4, 4]
GNN = {"type": "spon", "processor": "gnn", "width": 8, "depth": 2, "hops": 2, "coarse_cells": 2}
MLP = {"type": "spon", "processor": "mlp", "hidden": [16]}


def cli(*args: str) -> int:
    """``fe-operators ARGS`` in this process."""
    before = sys.argv[:]
    status = main([str(a) for a in args])
    assert sys.argv == before  # the CLI hides sys.argv from PETSc only while it runs
    return status


def write_config(path, data, out, model, *, normalize_inputs="global", **train):
    cfg = {
        "data": {"path": str(data), "split": SPLIT, "normalize_inputs": normalize_inputs,
                 "normalize_output": "none"},
        "model": model,
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "threads": 1, "progress": False,
                  "metrics": ["rel_l2", "rel_h1"], **train},
        "out": {"dir": str(out)},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Darcy data on unitsquare:6 (train) and unitsquare:5 (other mesh), Poisson data, a GNN and an MLP run."""
    folder = tmp_path_factory.mktemp("spon")
    assert cli("generate", "darcy", "--mesh", "unitsquare:6", "--samples", 24, "--out", folder / "d6.h5",
               "--seed", 0) == 0
    assert cli("generate", "darcy", "--mesh", "unitsquare:5", "--samples", 6, "--out", folder / "d5.h5",
               "--seed", 1) == 0
    assert cli("generate", "poisson", "--mesh", "unitsquare:6", "--samples", 6, "--out", folder / "p6.h5",
               "--seed", 0) == 0
    for name, model in (("gnn", GNN), ("mlp", MLP)):
        cfg = write_config(folder / f"{name}.yaml", folder / "d6.h5", folder / name, model)
        assert cli("train", "--config", cfg) == 0
    return folder


def read_eval(out):
    return json.loads((out / "evaluation.json").read_text())


def test_generate_train_evaluate(work, capsys):
    out = work / "eval_gnn"
    assert cli("evaluate", work / "gnn", "--data", work / "d6.h5", "--out", out) == 0
    table = capsys.readouterr().out
    for row in ("relative L2", "relative H1", "max boundary error", "parameters", "inference ms/sample"):
        assert row in table
    s = read_eval(out)
    assert s["split"] == "test" and s["n_samples"] == SPLIT[2]
    for key in ("rel_l2", "rel_h1", "ms_per_sample"):
        assert np.isfinite(s[key]) and s[key] > 0
    assert s["boundary_error"] == 0.0  # exact Dirichlet lifting
    assert s["n_params"] > 0
    for kind in ("png", "vtu", "json"):
        assert (out / f"samples.{kind}" if kind != "json" else out / "evaluation.json").stat().st_size > 0
    # the same relative L2 as the trainer's test metric on best.pt
    logged = json.loads((work / "gnn" / "metrics.json").read_text())["test"]["rel_l2"]
    assert s["rel_l2"] == pytest.approx(logged, rel=1e-4)


def test_gnn_on_another_mesh_and_mlp_refused(work, capsys):
    out = work / "eval_other"
    assert cli("evaluate", work / "gnn", "--data", work / "d5.h5", "--mesh", "unitsquare:5", "--out", out,
               "--plots", 0) == 0
    s = read_eval(out)
    assert s["other_mesh"] and s["split"] == "all" and s["n_samples"] == 6
    assert np.isfinite(s["rel_l2"]) and s["boundary_error"] == 0.0
    capsys.readouterr()
    assert cli("evaluate", work / "mlp", "--data", work / "d5.h5", "--mesh", "unitsquare:5") == 1
    err = capsys.readouterr().err
    assert "--mesh needs a mesh-agnostic model" in err and "'mlp'" in err and len(err.strip().splitlines()) == 1
    # --mesh is not needed: the dataset records its mesh, and the GNN runs there as with --mesh
    out_auto = work / "eval_other_auto"
    assert cli("evaluate", work / "gnn", "--data", work / "d5.h5", "--out", out_auto, "--plots", 0) == 0
    auto = read_eval(out_auto)
    assert auto["other_mesh"] and auto["mesh"] == "unitsquare:5" and auto["rel_l2"] == s["rel_l2"]
    assert auto["boundary_error"] == s["boundary_error"]
    capsys.readouterr()
    # ... while a fixed-mesh model is a space mismatch naming the field and what to do
    assert cli("evaluate", work / "mlp", "--data", work / "d5.h5") == 1
    err = capsys.readouterr().err
    assert "do not match" in err and "n_nodes 49" in err and "runs only on its training mesh" in err
    assert "d6.h5" in err and len(err.strip().splitlines()) == 1
    # --mesh must be the dataset's mesh
    assert cli("evaluate", work / "gnn", "--data", work / "d5.h5", "--mesh", "unitsquare:7") == 1
    err = capsys.readouterr().err
    assert "was generated on mesh 'unitsquare:5'" in err and "--mesh is not needed" in err


def test_dataset_of_another_problem_is_a_clear_error(work, capsys):
    assert cli("evaluate", work / "gnn", "--data", work / "p6.h5") == 1
    err = capsys.readouterr().err
    assert "fe-operators evaluate: error:" in err and "inputs/a" in err and "inputs/f" in err


def test_missing_or_corrupt_checkpoint(work, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(work / "gnn", run)
    (run / "best.pt").write_bytes(b"\x80\x04garbage")
    assert cli("evaluate", run, "--data", work / "d6.h5") == 1
    err = capsys.readouterr().err
    assert "best.pt:" in err and "truncated" in err
    (run / "best.pt").unlink()
    assert cli("evaluate", run, "--data", work / "d6.h5") == 1
    assert "best.pt: no such file" in capsys.readouterr().err
    assert cli("evaluate", run, "--data", tmp_path / "none.h5", "--checkpoint", "last") == 1
    assert "no dataset file at" in capsys.readouterr().err


def test_bad_spon_config(work, tmp_path, capsys):
    cfg = write_config(tmp_path / "bad.yaml", work / "d6.h5", tmp_path / "bad", {**MLP, "width": 8})
    assert cli("train", "--config", cfg) == 2
    err = capsys.readouterr().err
    assert "model.width:" in err and "gnn processor" in err and "processor: mlp" in err
    cfg = write_config(tmp_path / "bad2.yaml", work / "d6.h5", tmp_path / "bad2", {**GNN, "hops": "many"})
    assert cli("train", "--config", cfg) == 2
    assert "model.hops: expected int, got str 'many'" in capsys.readouterr().err
    cfg = write_config(tmp_path / "bad3.yaml", work / "d6.h5", tmp_path / "bad3", {**GNN, "procesor": "gnn"})
    assert cli("train", "--config", cfg) == 2
    assert "model.procesor: unknown key; did you mean 'processor'?" in capsys.readouterr().err


def test_input_dependent_boundary_data_exact_and_null_lifting_refused(work, tmp_path, capsys):
    """Poisson's u = g: lifted from the physical g through normalizers (boundary error 0);
    ``lifting_input: null`` would impose zero there and is refused."""
    def poisson_config(name, model):
        cfg = write_config(tmp_path / f"{name}.yaml", work / "p6.h5", tmp_path / name, model, epochs=1)
        config = yaml.safe_load(cfg.read_text())
        config["data"].update(split=[4, 1, 1], normalize_output="dof")
        cfg.write_text(yaml.safe_dump(config))
        return cfg

    assert cli("train", "--config", poisson_config("p", MLP)) == 0
    assert cli("evaluate", tmp_path / "p", "--data", work / "p6.h5", "--out", tmp_path / "e") == 0
    assert read_eval(tmp_path / "e")["boundary_error"] == 0.0
    capsys.readouterr()
    assert cli("train", "--config", poisson_config("null", {**MLP, "lifting_input": None})) == 2
    err = capsys.readouterr().err
    assert "model.lifting_input: null means fixed boundary data" in err and "['g']" in err


def test_renumbered_data_is_refused_not_permuted(work, tmp_path, capsys):
    """A file whose provenance rebuilds a mesh with other DOF numbering: an error, never a silent permutation."""
    data = tmp_path / "moved.h5"
    shutil.copy(work / "d6.h5", data)
    with h5py.File(data, "a") as h5:
        prov = json.loads(h5["fe_operators"].attrs["provenance"])
        prov["mesh"] = "rectangle:2,1:6x6"  # same topology, other coordinates
        h5["fe_operators"].attrs["provenance"] = json.dumps(prov)
    cfg = write_config(tmp_path / "r.yaml", data, tmp_path / "r", GNN)
    assert cli("train", "--config", cfg) == 1
    assert "numbers the DOFs of" in capsys.readouterr().err


def test_non_finite_predictions_are_an_error(work, tmp_path, capsys):
    from fe_operators.train import read_checkpoint, save_checkpoint

    data = read_checkpoint(work / "gnn" / "best.pt")
    state = data["model"]["state_dict"]
    key = next(k for k in state if k.startswith("network.processor.decoder") and k.endswith("bias"))
    state[key] = torch.full_like(state[key], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in data.items() if k not in (
        "format", "format_version", "fe_operators_version", "torch_version")})
    assert cli("evaluate", tmp_path / "nan.pt", "--data", work / "d6.h5", "--out", tmp_path / "e", "--split",
               "all") == 1
    err = capsys.readouterr().err
    assert "NaN" in err and "24 of 24 samples" in err and "rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...)" in err  # cut at 10
    assert not (tmp_path / "e" / "evaluation.json").exists()


@pytest.mark.parametrize("args, message", [
    (("--plots", "9"), "argument --plots: invalid choice: 9 (choose from 0, 1, 2, 3)"),
    (("--device", "gpu"), "fe-operators evaluate: error: --device: expected a torch device such as 'cpu'"),
    (("--batch-size", "0"), "fe-operators evaluate: error: --batch-size: expected a positive integer, got 0"),
])
def test_bad_evaluate_arguments_exit_2(work, capsys, args, message):
    assert cli("evaluate", work / "gnn", "--data", work / "d6.h5", *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_evaluate_on_cuda_without_cuda_is_a_clear_error(work, capsys):
    assert cli("evaluate", work / "gnn", "--data", work / "d6.h5", "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert err.startswith("fe-operators evaluate: error: --device:") and err.count("\n") == 1
    assert "'cuda'" in err and "no CUDA device" in err and "use 'cpu'" in err


def test_no_sparse_csr_beta_warning_in_a_fresh_process(work):
    """torch warns once per process on its first sparse CSR tensor; the library silences it where it makes them
    (here: a SPON checkpoint's mesh operators, rebuilt on load, and the forward's graph and grid operators)."""
    script = ("import sys, numpy as np; from fe_operators.data import FEDataset; "
              "from fe_operators.train import load_model; "
              "x, y = FEDataset(sys.argv[2]).raw(np.arange(4)); "
              "print(tuple(load_model(sys.argv[1]).predict(x.double()).shape))")
    out = subprocess.run([sys.executable, "-c", script, str(work / "gnn" / "best.pt"), str(work / "d6.h5")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(4, 49)" and "Sparse CSR tensor support is in beta" not in out.stderr

