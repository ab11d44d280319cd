"""``make bench-mgno``: SPON-MG (the multigrid processor) against the pinned FNO, the paper's MgNO and SPON-GNN.

Every model is trained for the same wall-clock budget (``--budget``, default 600 s) with
the weights of its best validation epoch kept (:func:`common.train_timed`), and
evaluated in the FE norms of the output space: mean relative L2 and relative (full) H1
error on the test samples. Four stages; with the defaults seven models train for 10
minutes each, so a full run takes about 90 minutes (the issue's 45 cannot hold seven
10-minute budgets; data generation on a first run and stage 4 add the rest):

1. **square** — Darcy on ``unitsquare:64`` (the ``bench-spon`` data: coefficient ``cg1``,
   1000/100/200 samples, seed 0, cached under ``--square-out``):

   * FNO (neuralop), pinned, trained exactly as in ``bench-spon`` (:func:`common.run_fno`);
   * MgNO (grid): the paper's conv MgNO (:mod:`mgno_grid`, :data:`mgno_grid.PINNED`: 24
     channels, 4 layers, 6 levels on the 65×65 grid) with the paper's optimisation: Adam,
     one-cycle to max lr 5e-4, batch 8, relative H1 loss summed over the batch, selected
     on validation relative L2;
   * SPON-MG: ``spon_for_problem(problem, "multigrid", mesh_spec="unitsquare:64", ...)``
     (a 6-level hierarchy with the same nodes), settings :data:`MG_OPTIONS` /
     :data:`MG_TRAIN` (``--mg-*`` options), input/output scaled by one number each
     (:class:`common.ScaledSPON`: the boundary values stay exact).

2. **geom** — Darcy on ``plate_holes/r2`` (``--geom-mesh``: 12,774 CG1 DOFs, a 3-level
   hierarchy), same counts, seed 0:

   * SPON-MG (as above, the hierarchy of the data's mesh);
   * SPON-GNN with ``bench-spon``'s settings (``--gnn-*``; :func:`common.run_spon`);
   * FNO (box grid): the pinned FNO on a ``(GEOM_GRID + 1)²`` vertex grid over the
     bounding box (``--geom-grid``). Inputs are interpolated onto the grid with zero
     outside the domain, the FNO is trained on the grid values of the solution (zero in
     the holes, the solution's own boundary value), and its grid predictions are
     interpolated back to the DOFs; its errors are measured there, in the FE norm, like
     every other model's (the interpolation both ways is part of its inference time).

3. **transfer** — SPON-MG trained on ``plate_holes/r1`` data (``--transfer-mesh``; seed 1,
   same counts) and tested, unchanged, on the ``plate_holes/r2`` test samples of stage 2
   (a context built for the r2 hierarchy by ``context_for_model``). The resolution floor,
   as ``bench-spon`` measures it: the r1 FE solution of the r2 test coefficients (first
   ``--floor-samples``) against the r2 truth.

4. **speed** — SPON-MG batched inference per sample (batches of ``--large-batch``: about
   8 GB resident at 2; warm, the faster of two passes) on ``plate_holes/r5``
   (``--large-mesh``: 796,606 CG1 DOFs; ``plate_holes/r4`` has 199,902, below the 250k
   asked for), ``--large-samples`` samples (seed 2), against the best warm classical
   Firedrake solve of the same Darcy problem there (median of ``--solves``): the
   problem's sparse direct Cholesky and CG + GAMG (rtol 1e-8; its relative L2 distance to
   the stored direct solution is printed), whichever is faster. The model is the transfer model of stage 3 (else
   stage 2's SPON-MG, else an untrained one: speed only); its error on these samples is
   printed too.

Printed: the machine and the load average (a ``warning:`` line whenever the 1-minute
load average exceeds the number of cores at the start of a stage or model: wall-clock
budgets are then unfair), one table per stage (relative L2, relative H1, max boundary
error, parameters, epochs, seconds per epoch — validation included —, train seconds,
inference ms per sample: batches of ``--infer-batch``, warm, the faster of two passes),
the transfer floor, the FE solve times, and the lines

* ``ratio sponmg_vs_fno_relL2 <x>`` (target <= 0.5) and ``ratio
  sponmg_vs_mgno_grid_relL2 <x>`` (target <= 1.0): stage 1, SPON-MG's test relative L2
  over FNO's / MgNO (grid)'s; not printed if FNO's error is above ``--fno-max-err``
  (3 %: the budget is then too small for the pinned FNO on this machine, as in
  ``bench-spon``);
* ``ratio sponmg_vs_fno_geom_relL2 <x>`` (target <= 0.5) and ``ratio
  sponmg_vs_gnn_geom_relL2 <x>``: stage 2;
* ``ratio sponmg_transfer_vs_floor <x>`` (target <= 1.2): stage 3, the r2 error over
  ``hypot(e_r1, floor)`` (``bench-spon``'s ``gnn_transfer_vs_floor``);
* ``ratio sponmg_infer_vs_fe_solve_250k <x>`` (target <= 0.5): stage 4.

Everything is also written to ``<out>/results.json``. Data files are cached under
``--out`` (default ``out/bench/mgno``) and reused; ``--square-out`` (default
``out/bench/spon``) holds the unitsquare:64 file shared with ``bench-spon``.

Smoke run (a few minutes): ``python benchmarks/bench_mgno.py --budget 20 --train 40 --val
10 --test 10 --skip-large``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ["OMP_NUM_THREADS"] = "1"  # Firedrake/PETSc single-threaded; torch threads set below

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    ScaledSPON, check_load, dataset, fe_solve_time, machine_summary, mesh_dataset, n_params, pinned_fno, print_ratios,
    run_fno, run_spon, start_training_bench, timed_predict, train_grid_fno, train_timed, transfer_floor, val_fn,
)

# ----------------------------------------------------------------------- settings (the lead tunes these)
#: SPON-MG architecture (``spon_for_problem(..., "multigrid", **MG_OPTIONS)``); ``levels=None``: all levels
MG_OPTIONS: dict[str, Any] = {"width": 24, "layers": 4, "levels": None, "pre_smoothing": 1,
                              "coarsest_smoothing": 2, "post_smoothing": 0, "mixing": "full"}
#: SPON-MG training: AdamW with a cosine decay over the budget ("onecycle": mgno_grid.OneCycle to ``lr``),
#: relative-``loss`` FE norm ("h1" as the MgNO paper, or "l2")
MG_TRAIN: dict[str, Any] = {"lr": 1e-3, "batch": 8, "loss": "h1", "schedule": "cosine", "weight_decay": 1e-4}
#: SPON-GNN: bench_spon's settings
GNN_OPTIONS: dict[str, Any] = {"width": 32, "depth": 2, "hops": 0, "coarse_cells": 0, "latent_cells": 16,
                               "latent_modes": 8, "latent_padding": 1.0}
GNN_TRAIN: dict[str, Any] = {"lr": 3e-3, "batch": 5, "weight_decay": 1e-4}
#: FNO (both grids): bench_spon's lr, batch and weight decay; the paper's MgNO: its own
FNO_TRAIN: dict[str, Any] = {"lr": 8e-3, "batch": 20, "weight_decay": 1e-4}
MGNO_GRID_TRAIN: dict[str, Any] = {"max_lr": 5e-4, "batch": 8, "weight_decay": 1e-4}
#: meshes of stages 2-4 and the cells per side of the FNO's bounding-box grid
GEOM_MESH, TRANSFER_MESH, LARGE_MESH = "plate_holes/r2", "plate_holes/r1", "plate_holes/r5"
GEOM_GRID = 128
#: CG + GAMG, the iterative candidate of the classical solve
GAMG_PARAMETERS: dict[str, Any] = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": 1e-8, "pc_type": "gamg"}
FNO_MAX_ERR = 0.03
TARGETS = {"sponmg_vs_fno_relL2": 0.5, "sponmg_vs_mgno_grid_relL2": 1.0, "sponmg_vs_fno_geom_relL2": 0.5,
           "sponmg_transfer_vs_floor": 1.2, "sponmg_infer_vs_fe_solve_250k": 0.5}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600.0, help="training seconds per model (default 600)")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--n", type=int, default=64, help="cells per side of stage 1's unit square (default 64)")
    p.add_argument("--geom-mesh", default=GEOM_MESH)
    p.add_argument("--transfer-mesh", default=TRANSFER_MESH, help="a coarser refinement of --geom-mesh's base")
    p.add_argument("--large-mesh", default=LARGE_MESH, help="stage 4's mesh (>= 250k DOFs)")
    p.add_argument("--geom-grid", type=int, default=GEOM_GRID, help="cells per side of the FNO's box grid")
    p.add_argument("--large-samples", type=int, default=4, help="samples generated on --large-mesh (default 4)")
    p.add_argument("--large-batch", type=int, default=2,
                   help="inference batch on --large-mesh (default 2: about 8 GB resident)")
    p.add_argument("--solves", type=int, default=3,
                   help="timed warm FE solves per solver on --large-mesh (median; default 3)")
    p.add_argument("--floor-samples", type=int, default=50)
    p.add_argument("--skip-square", action="store_true", help="skip stage 1 (unitsquare)")
    p.add_argument("--skip-geom", action="store_true", help="skip stage 2 (complex geometry)")
    p.add_argument("--skip-transfer", action="store_true", help="skip stage 3 (transfer)")
    p.add_argument("--skip-large", action="store_true", help="skip stage 4 (speed on --large-mesh)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--infer-batch", type=int, default=20, help="batch of validation and timed inference")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    p.add_argument("--out", default="out/bench/mgno", help="data files and results.json")
    p.add_argument("--square-out", default="out/bench/spon", help="folder of the unitsquare data (bench-spon's)")
    p.add_argument("--fno-max-err", type=float, default=FNO_MAX_ERR,
                   help="stage 1 FNO error above which its ratios are not printed (default 0.03)")
    p.add_argument("--no-install", action="store_true", help="fail if neuralop is missing instead of installing it")
    # SPON-MG
    p.add_argument("--mg-width", type=int, default=MG_OPTIONS["width"])
    p.add_argument("--mg-layers", type=int, default=MG_OPTIONS["layers"])
    p.add_argument("--mg-levels", type=int, default=MG_OPTIONS["levels"], help="finest levels used (default all)")
    p.add_argument("--mg-pre-smoothing", type=int, default=MG_OPTIONS["pre_smoothing"])
    p.add_argument("--mg-coarsest-smoothing", type=int, default=MG_OPTIONS["coarsest_smoothing"])
    p.add_argument("--mg-post-smoothing", type=int, default=MG_OPTIONS["post_smoothing"])
    p.add_argument("--mg-mixing", choices=["full", "separable"], default=MG_OPTIONS["mixing"])
    p.add_argument("--mg-lr", type=float, default=MG_TRAIN["lr"])
    p.add_argument("--mg-batch", type=int, default=MG_TRAIN["batch"])
    p.add_argument("--mg-loss", choices=["h1", "l2"], default=MG_TRAIN["loss"])
    p.add_argument("--mg-schedule", choices=["cosine", "onecycle"], default=MG_TRAIN["schedule"])
    p.add_argument("--mg-weight-decay", type=float, default=MG_TRAIN["weight_decay"])
    # baselines
    p.add_argument("--gnn-lr", type=float, default=GNN_TRAIN["lr"])
    p.add_argument("--gnn-batch", type=int, default=GNN_TRAIN["batch"])
    for key, value in GNN_OPTIONS.items():
        p.add_argument(f"--gnn-{key.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--fno-lr", type=float, default=FNO_TRAIN["lr"])
    p.add_argument("--batch", type=int, default=FNO_TRAIN["batch"], help="FNO's batch (default 20)")
    p.add_argument("--weight-decay", type=float, default=FNO_TRAIN["weight_decay"], help="FNO and SPON-GNN")
    p.add_argument("--mgno-lr", type=float, default=MGNO_GRID_TRAIN["max_lr"], help="MgNO (grid) one-cycle max lr")
    p.add_argument("--mgno-batch", type=int, default=MGNO_GRID_TRAIN["batch"])
    return p.parse_args(argv)


def mg_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"width": args.mg_width, "layers": args.mg_layers, "levels": args.mg_levels,
            "pre_smoothing": args.mg_pre_smoothing, "coarsest_smoothing": args.mg_coarsest_smoothing,
            "post_smoothing": args.mg_post_smoothing, "mixing": args.mg_mixing}


def gnn_options(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, f"gnn_{key}") for key in GNN_OPTIONS}


# ---------------------------------------------------------------------------------- data and evaluation
def with_h1(data: dict[str, Any]) -> dict[str, Any]:
    """Add the FE H1 norm of the output space and the Dirichlet mask of the DOFs."""
    import firedrake as fd

    from fe_operators.fem import DirichletDofs, FENorm

    problem = data["problem"]
    V = problem.output_space
    zero = {name: fd.Function(W) for name, W in problem.input_spaces.items()}
    data["h1"] = FENorm.h1(V)
    data["mask"] = DirichletDofs(V, problem.output_bcs(zero)).mask
    return data


def load_data(spec: str, seed: int, counts: tuple[int, int, int], out: Path) -> dict[str, Any]:
    return with_h1(mesh_dataset(spec, seed, counts, out))


def evaluate_model(predict: Callable[[Any], Any], data: dict[str, Any], info: dict[str, Any], batch: int,
                   passes: int = 2) -> dict[str, Any]:
    """``info`` (a ``train_timed`` record) plus the test metrics of ``predict``.

    Mean relative L2 and H1 errors in the FE norms, max error on the Dirichlet DOFs, and
    batched inference seconds per sample (batches of ``batch``, inputs in memory, after
    one warm-up batch, the fastest of ``passes`` passes over the test set, as
    :func:`common.evaluate` times it; the metrics use that pass's predictions).
    """
    a, u = data["split"]["test"]
    pred, seconds = timed_predict(predict, a, batch, passes)  # warm-up first: cycle levels, casts
    with torch.no_grad():
        pred, u = pred.double(), u.double()
        res = {"rel_l2": float(data["norm"].relative(pred, u).mean()),
               "rel_h1": float(data["h1"].relative(pred, u).mean()),
               "max_boundary_error": float((pred[:, data["mask"]] - u[:, data["mask"]]).abs().max()),
               "infer_s": seconds / a.shape[0]}
    epochs = info.get("epochs", 0.0)
    res["s_per_epoch"] = info["train_s"] / epochs if epochs else math.nan
    print(f"  test rel L2 {res['rel_l2']:.4f}, rel H1 {res['rel_h1']:.4f}", flush=True)
    return {**info, **res}


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print()
    print(title)
    w = max(26, 2 + max(map(len, rows)))
    print(f"{'model':<{w}}{'rel L2':>9}{'rel H1':>9}{'max bnd err':>13}{'params':>11}{'epochs':>8}"
          f"{'s/epoch':>9}{'train [s]':>11}{'infer [ms/sample]':>19}")
    for name, r in rows.items():
        print(f"{name:<{w}}{r['rel_l2']:>9.4f}{r['rel_h1']:>9.4f}{r['max_boundary_error']:>13.2e}"
              f"{r['params']:>11,}{r['epochs']:>8.1f}{r['s_per_epoch']:>9.2f}{r['train_s']:>11.0f}"
              f"{r['infer_s'] * 1e3:>19.3f}")


# ---------------------------------------------------------------------------------- models
def run_sponmg(data: dict[str, Any], args: argparse.Namespace, label: str) -> tuple[Any, dict[str, Any]]:
    """SPON-MG on ``data``'s mesh hierarchy, trained for ``--budget`` seconds."""
    from fe_operators.fem import RelativeLoss
    from fe_operators.models import spon_for_problem
    from mgno_grid import OneCycle

    a, u = data["split"]["train"]
    va, vu = data["split"]["val"]
    torch.manual_seed(args.seed)
    check_load(label)
    spon = spon_for_problem(data["problem"], "multigrid", mesh_spec=data["spec"], **mg_options(args))
    model = ScaledSPON(spon, a, u)
    loss = RelativeLoss(data["h1"] if args.mg_loss == "h1" else data["norm"])
    schedule = OneCycle(args.mg_lr) if args.mg_schedule == "onecycle" else None
    info = train_timed(model, lambda x, y: loss(model(x), y), val_fn(model, va, vu, data["norm"], args.infer_batch),
                       a, u, budget=args.budget, lr=args.mg_lr, weight_decay=args.mg_weight_decay,
                       batch=args.mg_batch, seed=args.seed, label=label, schedule=schedule)
    info["params"] = n_params(model)
    return model, info


def run_mgno_grid(data: dict[str, Any], args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The paper's conv MgNO on the (n+1)² grid, the paper's optimisation, for ``--budget`` seconds."""
    from fe_operators.fem import RelativeLoss
    from mgno_grid import grid_mgno, train_mgno_grid

    a, u = data["split"]["train"]
    va, vu = data["split"]["val"]
    torch.manual_seed(args.seed)
    check_load("MgNO (grid)")
    model = grid_mgno(data["file"].dof_coordinates("output"), data["n"], a, u)
    info = train_mgno_grid(model, a, u, va, vu, RelativeLoss(data["h1"], reduction="sum"), args.budget,
                           val_norm=data["norm"], max_lr=args.mgno_lr, batch=args.mgno_batch,
                           weight_decay=MGNO_GRID_TRAIN["weight_decay"], seed=args.seed, val_batch=args.infer_batch)
    return model, info


class BoxGridModel(torch.nn.Module):
    """DOFs -> a vertex grid over the bounding box (zero outside the domain) -> grid model -> DOFs.

    Parameters
    ----------
    grid_model
        Maps ``(batch, n_grid)`` grid-mesh CG1 values to the same (a :class:`fno_grid.GridFNO`).
    to_box, from_box
        :class:`~fe_operators.sparse.SparseMap` interpolations DOFs -> grid nodes
        (rows of nodes outside the domain are zero) and grid nodes -> DOFs.

    Shapes
    ------
    ``forward``: ``(batch, n_dofs)`` -> ``(batch, n_dofs)`` float64.
    """

    def __init__(self, grid_model: torch.nn.Module, to_box: Any, from_box: Any) -> None:
        super().__init__()
        self.grid_model, self.to_box, self.from_box = grid_model, to_box, from_box

    def boxed(self, x: torch.Tensor) -> torch.Tensor:
        """Grid-mesh values ``(batch, n_grid)`` of DOF values (float64)."""
        return self.to_box.apply(x.double().unsqueeze(-1)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_box.apply(self.grid_model(self.boxed(x)).unsqueeze(-1)).squeeze(-1)


def box_grid_maps(problem: Any, cells: int) -> tuple[Any, Any, Any, Any, int]:
    """Interpolations between ``problem``'s CG1 DOFs and a ``(cells+1)²`` grid over its bounding box.

    Returns ``(to_box, from_box, to_grid, to_dofs, outside)``: two SparseMaps (DOFs ->
    grid-mesh CG1 nodes with zero rows outside the domain, and back), the permutations
    between the grid mesh's DOF order and row-major grid order
    (:func:`fno_grid.grid_permutation`), and the number of grid nodes outside the domain.
    """
    import firedrake as fd

    from fe_operators.fem import interpolation_matrix
    from fe_operators.sparse.maps import SparseMap
    from fno_grid import grid_permutation

    V = problem.output_space
    xy = V.mesh().coordinates.dat.data_ro
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    box = fd.RectangleMesh(cells, cells, float(hi[0] - lo[0]), float(hi[1] - lo[1]), originX=float(lo[0]),
                           originY=float(lo[1]))
    G = fd.FunctionSpace(box, "CG", 1)
    to_box = interpolation_matrix(V, G, allow_missing=True)
    from_box = interpolation_matrix(G, V)
    nodes = fd.assemble(fd.interpolate(fd.SpatialCoordinate(box), fd.VectorFunctionSpace(box, "CG", 1)))
    to_grid, to_dofs = grid_permutation((nodes.dat.data_ro - lo) / (hi - lo), cells)
    outside = int((to_box.getnnz(axis=1) == 0).sum())
    return SparseMap.from_scipy(to_box), SparseMap.from_scipy(from_box), to_grid, to_dofs, outside


def run_fno_box(data: dict[str, Any], args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The pinned FNO on the bounding-box grid: trained on grid values, measured on the DOFs."""
    from fno_grid import GridFNO

    cells = args.geom_grid
    file = data["file"]
    if not (file.dof_coordinates("inputs/a") == file.dof_coordinates("output")).all():
        raise ValueError("the input and output DOF nodes differ; expected both in CG1")
    to_box, from_box, to_grid, to_dofs, outside = box_grid_maps(data["problem"], cells)
    a, u = data["split"]["train"]
    torch.manual_seed(args.seed)
    print(f"  box grid {cells + 1}x{cells + 1}, {outside} of its nodes outside the domain (input 0 there)", flush=True)
    check_load("FNO (box grid)")
    probe = BoxGridModel(torch.nn.Identity(), to_box, from_box)
    a_box, u_box = probe.boxed(a), probe.boxed(u)
    grid_model = GridFNO(pinned_fno(), to_grid, to_dofs, cells + 1, a_box, u_box)
    model = BoxGridModel(grid_model, to_box, from_box)
    # train on grids prepared once (the interpolation is not part of the training cost)
    info = train_grid_fno(model, grid_model, grid_model.grid(a_box), grid_model.grid(u_box).float(), data, args,
                          "FNO (box grid)")
    return model, info


# ---------------------------------------------------------------------------------- stages
def stage_square(args: argparse.Namespace, counts: tuple[int, int, int]) -> tuple[dict, dict]:
    """Stage 1: FNO, MgNO (grid) and SPON-MG on unitsquare:n."""
    data = with_h1(dataset(args.n, 0, counts, Path(args.square_out)))
    rows: dict[str, dict[str, Any]] = {}
    check_load("FNO")
    model, info = run_fno(data, args)
    rows["FNO (neuralop)"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_mgno_grid(data, args)
    rows["MgNO (grid)"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_sponmg(data, args, "SPON-MG")
    rows["SPON-MG"] = evaluate_model(model, data, info, args.infer_batch)
    print_table(f"Stage 1: Darcy, unitsquare:{args.n} CG1, coefficient cg1; {'/'.join(map(str, counts))} samples; "
                f"test errors in the FE norms", rows)
    ratios: dict[str, float] = {}
    fno = rows["FNO (neuralop)"]["rel_l2"]
    if fno > args.fno_max_err:
        print(f"FNO's test relative L2 is {fno:.2%} > {args.fno_max_err:.0%}: the budget of {args.budget:.0f} s is "
              f"too small for the pinned FNO on this machine; no stage-1 ratios printed (raise --budget)")
    else:
        ratios["sponmg_vs_fno_relL2"] = rows["SPON-MG"]["rel_l2"] / fno
        ratios["sponmg_vs_mgno_grid_relL2"] = rows["SPON-MG"]["rel_l2"] / rows["MgNO (grid)"]["rel_l2"]
    return rows, ratios


def stage_geom(args: argparse.Namespace, data: dict[str, Any]) -> tuple[dict, dict, Any]:
    """Stage 2: SPON-MG, SPON-GNN and the box-grid FNO on the complex geometry."""
    rows: dict[str, dict[str, Any]] = {}
    mg, info = run_sponmg(data, args, "SPON-MG")
    rows["SPON-MG"] = evaluate_model(mg, data, info, args.infer_batch)
    check_load("SPON-GNN")
    model, info = run_spon(data, "gnn", gnn_options(args), budget=args.budget, lr=args.gnn_lr, args=args,
                           label="SPON-GNN", batch=args.gnn_batch)
    rows["SPON-GNN"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_fno_box(data, args)
    rows["FNO (box grid)"] = evaluate_model(model, data, info, args.infer_batch)
    n = data["problem"].output_space.dim()
    print_table(f"Stage 2: Darcy, {data['spec']} CG1 ({n:,} DOFs), coefficient cg1; test errors in the FE norms; "
                f"FNO on a {args.geom_grid + 1}x{args.geom_grid + 1} bounding-box grid", rows)
    e = rows["SPON-MG"]["rel_l2"]
    ratios = {"sponmg_vs_fno_geom_relL2": e / rows["FNO (box grid)"]["rel_l2"],
              "sponmg_vs_gnn_geom_relL2": e / rows["SPON-GNN"]["rel_l2"]}
    return rows, ratios, mg


def stage_transfer(args: argparse.Namespace, fine: dict[str, Any], counts: tuple[int, int, int],
                   out: Path) -> tuple[dict, dict, Any]:
    """Stage 3: SPON-MG trained on the coarser refinement, tested on the finer one, and the floor."""
    from fe_operators.models.build import context_for_model

    coarse = load_data(args.transfer_mesh, 1, counts, out)
    rows: dict[str, dict[str, Any]] = {}
    model, info = run_sponmg(coarse, args, f"SPON-MG {args.transfer_mesh}")
    key_c, key_f = f"SPON-MG {coarse['spec']} -> itself", f"SPON-MG {coarse['spec']} -> {fine['spec']}"
    rows[key_c] = evaluate_model(model, coarse, info, args.infer_batch)
    t0 = time.perf_counter()
    ctx = context_for_model(model.spon, fine["problem"], mesh_spec=fine["spec"])
    print(f"  context for {fine['spec']}: {time.perf_counter() - t0:.1f} s", flush=True)
    rows[key_f] = evaluate_model(lambda a: model(a, context=ctx), fine, info, args.infer_batch)
    floor = transfer_floor(fine, coarse, args.floor_samples)
    n_floor = min(args.floor_samples, fine["split"]["test"][0].shape[0])
    e_c, e_f = rows[key_c]["rel_l2"], rows[key_f]["rel_l2"]
    best = math.hypot(e_c, floor)
    print_table(f"Stage 3: SPON-MG trained on {coarse['spec']} ({coarse['problem'].output_space.dim():,} DOFs), "
                f"tested on {coarse['spec']} and on {fine['spec']} (stage 2's test samples)", rows)
    print(f"transfer floor: the {coarse['spec']} FE solution of the {fine['spec']} test coefficients (first "
          f"{n_floor}) has rel L2 {floor:.4f} against the {fine['spec']} truth;\n  a model with error "
          f"{e_c:.4f} on {coarse['spec']} can be expected to reach about hypot({e_c:.4f}, {floor:.4f}) = {best:.4f} "
          f"on {fine['spec']}; it reaches {e_f:.4f}")
    return rows, {"sponmg_transfer_vs_floor": e_f / best}, model


def stage_speed(args: argparse.Namespace, model: Any, out: Path) -> tuple[dict, dict, dict]:
    """Stage 4: SPON-MG batched inference on the large mesh against the best warm Firedrake solve."""
    import firedrake as fd

    from fe_operators.models.build import context_for_model
    from fe_operators.problems.darcy import DarcyProblem

    n = args.large_samples
    data = load_data(args.large_mesh, 2, (0, 0, n), out)
    problem = data["problem"]
    dofs = problem.output_space.dim()
    if dofs < 250_000:
        print(f"warning: {args.large_mesh} has {dofs:,} DOFs, fewer than the 250k the speed ratio is defined for")
    if model is None:
        from fe_operators.io import load_mesh
        from fe_operators.models import spon_for_problem

        print(f"  no trained SPON-MG (stages 2 and 3 skipped): timing an untrained one built on {args.transfer_mesh} "
              f"(as the transfer model); its errors mean nothing")
        small = DarcyProblem(load_mesh(args.transfer_mesh), coefficient="cg1")
        a, u = data["split"]["test"]
        model = ScaledSPON(spon_for_problem(small, "multigrid", mesh_spec=args.transfer_mesh, **mg_options(args)), a, u)
    t0 = time.perf_counter()
    ctx = context_for_model(model.spon, problem, mesh_spec=data["spec"])
    setup_s = time.perf_counter() - t0
    check_load("the timed inference")
    info = {"epochs": 0.0, "train_s": 0.0, "params": sum(p.numel() for p in model.parameters())}
    row = evaluate_model(lambda a: model(a, context=ctx), data, info, args.large_batch)
    solves = {"direct (Cholesky)": fe_solve_time(data, args.solves)}
    params = {k: v for k, v in problem.params.items() if k != "solver_parameters"}
    gamg = {**data, "problem": DarcyProblem(problem.mesh, **params, solver_parameters=GAMG_PARAMETERS)}
    solves["CG + GAMG (rtol 1e-8)"] = fe_solve_time(gamg, args.solves)
    a0, u0 = (t[:1] for t in data["split"]["test"])
    u_gamg = gamg["problem"].solve({"a": fd.Function(problem.input_spaces["a"], val=a0[0].numpy().copy())})
    gamg_err = float(data["norm"].relative(torch.from_numpy(u_gamg.dat.data_ro.copy())[None], u0.double())[0])
    best = min(solves, key=solves.get)
    print()
    print(f"Stage 4: {data['spec']} ({dofs:,} DOFs), {n} samples; SPON-MG inference in batches of {args.large_batch} "
          f"(context set-up {setup_s:.1f} s, once per mesh): {row['infer_s']:.3f} s/sample; "
          f"rel L2 {row['rel_l2']:.4f}, rel H1 {row['rel_h1']:.4f}, max boundary error {row['max_boundary_error']:.2e}")
    for name, s in solves.items():
        print(f"  FE solve, {name}: {s:.3f} s (median of {args.solves}, warm)" + ("  <- best" if name == best else ""))
    print(f"  CG + GAMG solution vs the stored direct one: rel L2 {gamg_err:.1e}")
    return ({"SPON-MG": {**row, "context_setup_s": setup_s}}, {"sponmg_infer_vs_fe_solve_250k":
                                                               row["infer_s"] / solves[best]}, solves)


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nl_version = start_training_bench(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.square_out).mkdir(parents=True, exist_ok=True)
    counts = (args.train, args.val, args.test)
    print(machine_summary())
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; neuralop {nl_version}; budget "
          f"{args.budget:.0f} s per model, {args.threads} torch threads", flush=True)
    print(f"SPON-MG: {mg_options(args)}; lr {args.mg_lr}, batch {args.mg_batch}, relative {args.mg_loss.upper()} "
          f"loss, {args.mg_schedule} schedule, weight decay {args.mg_weight_decay}", flush=True)
    check_load("the start")
    t_start = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args), "rows": {}}
    ratios: dict[str, float] = {}
    speed_model = None
    if not args.skip_square:
        results["rows"]["square"], r = stage_square(args, counts)
        ratios.update(r)
    geom = None
    if not (args.skip_geom and args.skip_transfer):
        geom = load_data(args.geom_mesh, 0, counts, out)
    if not args.skip_geom:
        results["rows"]["geom"], r, speed_model = stage_geom(args, geom)
        ratios.update(r)
    if not args.skip_transfer:
        results["rows"]["transfer"], r, speed_model = stage_transfer(args, geom, counts, out)
        ratios.update(r)
    if not args.skip_large:
        results["rows"]["speed"], r, results["fe_solve_s"] = stage_speed(args, speed_model, out)
        ratios.update(r)

    print()
    bnd = max((row["max_boundary_error"] for stage in results["rows"].values() for name, row in stage.items()
               if name.startswith("SPON")), default=0.0)
    print(f"max boundary error of the SPONs: {bnd:.3g} (target 0); total {time.perf_counter() - t_start:.0f} s")
    results["ratios"] = ratios
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print_ratios(ratios, TARGETS, ", max boundary error 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
