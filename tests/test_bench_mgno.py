"""bench_mgno's bounding-box grid for the FNO on a domain with holes: exact interpolations both ways."""

import sys
from pathlib import Path
from types import SimpleNamespace

import firedrake as fd
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_mgno import BoxGridModel, box_grid_maps  # noqa: E402

from fe_operators.io import load_mesh  # noqa: E402


def test_box_grid_maps_are_exact_on_linear_fields_and_zero_in_the_holes():
    mesh = load_mesh("plate_holes")  # bounding box [0, 1]^2, holes inside
    V = fd.FunctionSpace(mesh, "CG", 1)
    cells = 16
    to_box, from_box, to_grid, to_dofs, outside = box_grid_maps(SimpleNamespace(output_space=V), cells)
    x, y = fd.SpatialCoordinate(mesh)
    f = fd.Function(V).interpolate(5.0 + x + 2.0 * y)  # positive everywhere: 0 only outside the domain
    f_dofs = torch.from_numpy(f.dat.data_ro.copy())

    # DOFs -> grid: the field's values at grid nodes in the domain, zero in the holes
    model = BoxGridModel(torch.nn.Identity(), to_box, from_box)
    grid = model.boxed(f_dofs[None])[0][torch.from_numpy(to_grid)].reshape(cells + 1, cells + 1).numpy()
    iy, ix = np.meshgrid(np.arange(cells + 1), np.arange(cells + 1), indexing="ij")
    expected = 5.0 + ix / cells + 2.0 * iy / cells
    inside = grid != 0.0
    assert 0 < outside == int((~inside).sum()) < (cells + 1) ** 2 // 2
    np.testing.assert_allclose(grid[inside], expected[inside], rtol=0, atol=1e-12)

    # grid -> DOFs: piecewise-linear interpolation reproduces a linear field exactly
    full = torch.from_numpy(expected.reshape(-1))[torch.from_numpy(to_dofs)]  # grid-mesh DOF order
    back = from_box.apply(full[None, :, None])[0, :, 0]
    torch.testing.assert_close(back, f_dofs, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------- the restructured bench
import argparse  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import bench_mgno  # noqa: E402
from common import MacCounter, load_spon, macs_per_sample, mesh_dataset, run_spon  # noqa: E402


def test_mac_counter_counts_dense_sparse_convolution_and_attention():
    from fe_operators.sparse import SparseMap, spmm

    torch.manual_seed(0)
    lin, x = torch.nn.Linear(8, 4), torch.randn(3, 8)
    with MacCounter() as count:
        lin(x)
    assert count.total == 3 * 8 * 4
    A = sp.random(6, 5, density=0.4, format="csr", random_state=0)
    dense = torch.randn(5, 7, dtype=torch.float64)
    with MacCounter() as count:
        SparseMap.from_scipy(A).apply(dense.T[:, :, None])            # torch CSR product: (1, 5, 7) -> 7 columns
        spmm(SparseMap.from_scipy(A), dense)                           # the package's scipy kernel
    assert count.total == 2 * A.nnz * 7
    conv, signal = torch.nn.Conv1d(3, 5, kernel_size=3), torch.randn(2, 3, 10)
    with MacCounter() as count:
        out = conv(signal)
    assert count.total == out.numel() * 3 * 3
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    with MacCounter() as count:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert count.total == 1 * 2 * 5 * 6 * (4 + 4)
    # per sample: a batch of 2 through a linear map
    assert macs_per_sample(lin, torch.randn(4, 8), batch=2) == 8 * 4


@pytest.fixture(scope="module")
def tiny_darcy(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_data")
    return bench_mgno.with_h1(mesh_dataset("unitsquare:4", 0, (12, 4, 4), out)), out


def test_run_spon_trains_through_the_trainer_with_the_budget_schedule_and_the_best_weights(tiny_darcy):
    data, out = tiny_darcy
    args = argparse.Namespace(out=str(out), batch=4, weight_decay=1e-4, seed=0, device="cpu")
    budget, lr = 2.0, 3e-3
    model, info = run_spon(data, "gnn", {"width": 8, "latent_cells": 4, "latent_modes": 2}, budget=budget, lr=lr,
                           args=args, label="SPON GNN tiny")
    run = Path(info["run_dir"])
    assert run == out / "runs" / "spon-gnn-tiny" and (run / "best.pt").exists() and (run / "last.pt").exists()
    assert info["train_s"] >= budget and info["steps"] == round(info["epochs"] * 3)
    doc = json.loads((run / "metrics.json").read_text())
    # the cosine schedule spans the budget: the last epoch (cut short by it) ends near lr 0
    assert doc["epochs"][-1]["lr"] < 0.25 * lr
    assert doc["epochs"][-1]["elapsed"] >= budget and info["steps"] == doc["epochs"][-1]["step"]
    best = min(doc["epochs"], key=lambda r: r["val_rel_l2"])
    assert info["best_epoch"] == best["epoch"] and info["val_rel_l2"] == pytest.approx(best["val_rel_l2"])
    # the returned model holds best.pt's weights, keeps the boundary values exact, counts its arithmetic
    a, u = data["split"]["test"]
    with torch.no_grad():
        pred = model(a)
        assert torch.equal(pred, load_spon(run / "best.pt")(a))
    assert float((pred[:, data["mask"]] - u[:, data["mask"]].double()).abs().max()) == 0.0
    assert macs_per_sample(model, a) > 0


def test_bench_mgno_stage_geom_in_smoke_mode(tmp_path, capsys):
    args = ["--smoke", "--stage", "geom", "--budget", "1", "--geom-mesh", "plate_holes", "--out", str(tmp_path),
            "--threads", "1", "--no-install"]
    assert bench_mgno.main(args) == 0
    text = capsys.readouterr().out
    assert "SPON-MG (algebraic levels)" in text and "MMAC/sample" in text
    lines = [line for line in text.splitlines() if line.startswith("ratio ")]
    assert [line.split()[1] for line in lines] == ["sponmg_vs_gnn_geom_relL2"]
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]["geom"]
    assert {r["max_boundary_error"] for r in rows.values()} == {0.0}
    assert all(r["macs"] > 0 and r["params"] > 0 for r in rows.values())
    assert (tmp_path / "runs" / "spon-mg-geom" / "best.pt").exists()


def test_sponmg_only_trains_spon_mg_alone_with_the_h1_loss_and_prints_no_ratio(tmp_path, capsys):
    args = ["--smoke", "--stage", "darcy64", "--sponmg-only", "--budget", "1", "--out", str(tmp_path),
            "--square-out", str(tmp_path), "--threads", "1", "--no-install"]
    assert bench_mgno.main(args) == 0
    text = capsys.readouterr().out
    assert "rel_h1 loss" in text and "relative H1 loss" in text
    assert not [line for line in text.splitlines() if line.startswith("ratio ")]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]["darcy64"]
    assert list(rows) == ["SPON-MG"] and rows["SPON-MG"]["max_boundary_error"] == 0.0


@pytest.mark.slow
def test_bench_mgno_smoke_prints_every_ratio(tmp_path, capsys):
    pytest.importorskip("neuralop")
    assert bench_mgno.main(["--smoke", "--out", str(tmp_path), "--square-out", str(tmp_path), "--threads", "1",
                            "--no-install"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ratio ")]
    assert [line.split()[1] for line in lines] == list(bench_mgno.TARGETS)
    # stage infer alone loads stage transfer's best.pt
    assert bench_mgno.main(["--smoke", "--stage", "infer", "--out", str(tmp_path), "--threads", "1",
                            "--no-install"]) == 0
    text = capsys.readouterr().out
    assert "stage transfer's model from an earlier run" in text and "ratio sponmg_infer_vs_fe_solve_800k" in text
