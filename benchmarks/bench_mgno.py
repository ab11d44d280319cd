"""``make bench-mgno``: SPON-MG (the hierarchical processor) against SPON-GNN, the pinned FNO and the paper's MgNO.

Every model trains for the same wall-clock budget (``--budget``, default 600 s) with a
cosine learning-rate decay whose length is the budget and the weights of its best
validation epoch restored at the end. Our models (SPON-MG, SPON-GNN; with
``--mgno-processor`` also the MgNO processor) train through the product,
:class:`fe_operators.train.Trainer` (:func:`common.run_spon`: ``scheduler.length:
time_budget``, ``restore_best``, run folders under ``<out>/runs``); the pinned FNO and
the paper's grid MgNO keep a plain loop on the same budget (:func:`common.train_timed`;
the MgNO with its paper's one-cycle over the budget). Every model is evaluated in the FE
norms of the output space: mean relative L2 and relative (full) H1 error on the test
samples, max error on the Dirichlet DOFs, parameters, epochs, seconds per epoch
(validation included), multiply-adds of one forward pass per sample
(:func:`common.macs_per_sample`) and batched inference per sample.

SPON-MG is the ``hierarchical`` processor with :class:`HierarchicalOptions`' defaults
(read when the bench runs, printed at its start; ``--mg-option key=value`` overrides one),
one configuration for every stage, trained at SPON-GNN's batch size (``--gnn-batch``)
with ``--mg-lr`` and ``--mg-loss`` (default the relative H1 norm of the output space;
``--sponmg-only`` trains it alone on stage 1's data, a trial of settings). SPON-GNN has
:class:`GNNOptions`' defaults and ``bench-spon``'s training settings. Four stages
(``--stage``, default all; each can run alone):

1. ``darcy64`` — Darcy on ``unitsquare:64`` (the ``bench-spon`` data: coefficient
   ``cg1``, 1000/100/200 samples, seed 0, cached under ``--square-out``): the pinned FNO
   with ``--fno-seeds`` seeds (default 2; the median error counts), the grid MgNO
   (:mod:`mgno_grid`, the paper's settings), SPON-GNN and SPON-MG.
2. ``geom`` — Darcy on ``plate_holes/r2`` (``--geom-mesh``), same counts, seed 0:
   SPON-GNN and SPON-MG on algebraic levels only (``geometric_levels: false``: every
   level below the data's mesh by smoothed aggregation). ``--geom-fno`` adds the pinned
   FNO on a bounding-box grid (a row, no ratio).
3. ``transfer`` — SPON-MG and SPON-GNN trained on ``plate_holes/r1``
   (``--transfer-mesh``; seed 1, same counts); SPON-MG tested, unchanged, on the r2 test
   samples of stage 2, against the resolution floor (the r1 FE solution of the r2 test
   coefficients, first ``--floor-samples``, against the r2 truth).
4. ``infer`` — SPON-MG's batched inference per sample (encode, forward, decode; batches
   of ``--large-batch``, warm, the faster of two passes) on ``plate_holes/r5``
   (``--large-mesh``: 796,606 CG1 DOFs), ``--large-samples`` samples (seed 2), against the
   faster of the problem's sparse direct Cholesky and CG + GAMG (rtol 1e-8), assembly
   included (median of ``--solves`` warm solves). The one-off hierarchy build of the
   large mesh is printed separately. The model is stage 3's (this run's, else the
   ``best.pt`` an earlier run left in ``<out>/runs/sponmg-r1``, else an untrained one:
   speed only).

Printed: the machine and load average (a ``warning:`` line whenever the 1-minute load
exceeds the cores at the start of a model: wall-clock budgets are then unfair), one
table per stage, SPON-MG's multiply-adds per level, and the ratios (targets in the
``targets:`` line; a stage not run prints none of its ratios):

* ``ratio sponmg_vs_gnn_relL2`` (darcy64; target <= 0.8)
* ``ratio sponmg_vs_fno_relL2`` (darcy64, against the FNO's median; <= 0.5)
* ``ratio sponmg_vs_mgno_grid_relL2`` (darcy64; <= 0.5)
* ``ratio sponmg_vs_gnn_geom_relL2`` (geom; <= 0.8)
* ``ratio sponmg_vs_gnn_relH1`` (darcy64; <= 0.8)
* ``ratio sponmg_epoch_vs_gnn`` (darcy64, seconds per epoch; <= 0.5)
* ``ratio sponmg_transfer_vs_floor`` (transfer: the r2 error over ``hypot(e_r1, floor)``; <= 1.2)
* ``ratio sponmg_vs_gnn_r1_relL2`` (transfer: SPON-MG's r1 error over SPON-GNN's; <= 1.0)
* ``ratio sponmg_infer_vs_fe_solve_800k`` (infer; <= 1.0)

With the defaults five models train in stage 1, two in each of stages 2 and 3: about
90 minutes of training, and about 2 hours with data generation on a first run and
stage 4. Everything is also written to ``<out>/results.json``; data files are cached
under ``--out`` (default ``out/bench/mgno``) and ``--square-out`` (default
``out/bench/spon``, shared with ``bench-spon``).

Smoke run (tiny budgets and meshes, about two minutes on 2 cores; numbers mean nothing):
``python benchmarks/bench_mgno.py --smoke`` (``--stage`` and the other options still apply).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ["OMP_NUM_THREADS"] = "1"  # Firedrake/PETSc single-threaded; torch threads set below

import torch
import yaml

from fe_operators.models.processors.gnn import GNNOptions
from fe_operators.models.processors.hierarchical import HierarchicalOptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    check_load, dataset, fe_solve_time, load_spon, machine_summary, macs_per_sample, mesh_dataset, pinned_fno,
    print_ratios, run_fno, run_spon, start_training_bench, timed_predict, train_grid_fno, transfer_floor,
)

# ----------------------------------------------------------------------- settings
STAGES = ("darcy64", "geom", "transfer", "infer")
#: SPON training (both SPONs: lr, loss; SPON-MG at SPON-GNN's batch); the MgNO processor's own lr
GNN_TRAIN: dict[str, Any] = {"lr": 3e-3, "batch": 5, "weight_decay": 1e-4, "loss": "rel_l2"}
#: SPON-MG's loss is the output space's relative H1 norm: on darcy64 (600 s, one thread, 2026-12-07)
#: 0.94 % L2 / 4.1 % H1 against 1.29 % / 11.3 % with relative L2 in the same conditions
MG_TRAIN: dict[str, Any] = {"lr": 3e-3, "loss": "rel_h1"}
MGNO_PROCESSOR_TRAIN: dict[str, Any] = {"lr": 1e-3, "batch": 8, "loss": "rel_h1"}
#: FNO (both grids): bench_spon's lr, batch and weight decay; the paper's MgNO: its own
FNO_TRAIN: dict[str, Any] = {"lr": 8e-3, "batch": 20, "weight_decay": 1e-4}
MGNO_GRID_TRAIN: dict[str, Any] = {"max_lr": 5e-4, "batch": 8, "weight_decay": 1e-4}
#: meshes of stages 2-4 and the cells per side of the (optional) FNO's bounding-box grid
GEOM_MESH, TRANSFER_MESH, LARGE_MESH = "plate_holes/r2", "plate_holes/r1", "plate_holes/r5"
GEOM_GRID = 128
#: CG + GAMG, the iterative candidate of the classical solve
GAMG_PARAMETERS: dict[str, Any] = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": 1e-8, "pc_type": "gamg"}
FNO_MAX_ERR = 0.03
#: the ratios, in the order printed, and their targets
TARGETS = {"sponmg_vs_gnn_relL2": 0.8, "sponmg_vs_fno_relL2": 0.5, "sponmg_vs_mgno_grid_relL2": 0.5,
           "sponmg_vs_gnn_geom_relL2": 0.8, "sponmg_vs_gnn_relH1": 0.8, "sponmg_epoch_vs_gnn": 0.5,
           "sponmg_transfer_vs_floor": 1.2, "sponmg_vs_gnn_r1_relL2": 1.0, "sponmg_infer_vs_fe_solve_800k": 1.0}
#: --smoke: tiny budgets, meshes and counts (each can still be overridden)
SMOKE: dict[str, Any] = {"budget": 4.0, "train": 8, "val": 4, "test": 4, "n": 16, "geom_mesh": "plate_holes/r1",
                         "transfer_mesh": "plate_holes", "large_mesh": "plate_holes/r2", "large_samples": 2,
                         "solves": 1, "floor_samples": 2, "infer_batch": 4, "out": "out/bench/mgno-smoke",
                         "square_out": "out/bench/mgno-smoke"}
#: the run folder of stage 3's SPON-MG (stage 4 loads its best.pt when run alone)
TRANSFER_LABEL = "sponmg-r1"


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", nargs="+", choices=STAGES, default=list(STAGES),
                   help="stages to run (default all, in this order)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny budgets, meshes and counts to check the bench end to end (numbers mean nothing)")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds per model (default 600)")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--n", type=int, default=64, help="cells per side of stage 1's unit square (default 64)")
    p.add_argument("--geom-mesh", default=GEOM_MESH)
    p.add_argument("--transfer-mesh", default=TRANSFER_MESH, help="a coarser refinement of --geom-mesh's base")
    p.add_argument("--large-mesh", default=LARGE_MESH, help="stage 4's mesh (about 800k DOFs)")
    p.add_argument("--large-samples", type=int, default=4, help="samples generated on --large-mesh (default 4)")
    p.add_argument("--large-batch", type=int, default=2, help="inference batch on --large-mesh (default 2)")
    p.add_argument("--solves", type=int, default=3,
                   help="timed warm FE solves per solver on --large-mesh (median; default 3)")
    p.add_argument("--floor-samples", type=int, default=50)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="torch device of the SPONs' training (default cpu)")
    p.add_argument("--infer-batch", type=int, default=20, help="batch of validation and timed inference")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    p.add_argument("--out", default="out/bench/mgno", help="data files, run folders and results.json")
    p.add_argument("--square-out", default="out/bench/spon", help="folder of the unitsquare data (bench-spon's)")
    p.add_argument("--fno-max-err", type=float, default=FNO_MAX_ERR,
                   help="FNO error above which a warning says the budget is too small for it (default 0.03)")
    p.add_argument("--reuse-runs", action="store_true",
                   help="evaluate the SPON models an earlier run left in <out>/runs (best.pt, metrics.json) instead of "
                        "training them again (their epochs and seconds are that run's)")
    p.add_argument("--no-install", action="store_true", help="fail if neuralop is missing instead of installing it")
    # SPON-MG
    p.add_argument("--mg-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="override one HierarchicalOptions default (repeatable; the same in every stage)")
    p.add_argument("--mg-lr", type=float, default=MG_TRAIN["lr"])
    p.add_argument("--mg-loss", choices=["rel_l2", "rel_h1"], default=MG_TRAIN["loss"])
    p.add_argument("--sponmg-only", action="store_true",
                   help="stage darcy64 trains SPON-MG alone (a trial of --mg-* settings; prints its row, no ratios)")
    # SPON-GNN (GNNOptions' defaults; bench_spon's training)
    p.add_argument("--gnn-lr", type=float, default=GNN_TRAIN["lr"])
    p.add_argument("--gnn-batch", type=int, default=GNN_TRAIN["batch"], help="SPON-GNN's and SPON-MG's batch")
    p.add_argument("--weight-decay", type=float, default=FNO_TRAIN["weight_decay"], help="FNO and the SPONs")
    # the MgNO processor (optional row of stage 1)
    p.add_argument("--mgno-processor", action="store_true",
                   help="stage 1 also trains SPON with the multigrid (MgNO) processor (a row, no ratio)")
    # baselines
    p.add_argument("--fno-seeds", type=int, default=2, help="FNO trainings with seeds seed, seed+1, ... (median)")
    p.add_argument("--fno-lr", type=float, default=FNO_TRAIN["lr"])
    p.add_argument("--batch", type=int, default=FNO_TRAIN["batch"], help="FNO's batch (default 20)")
    p.add_argument("--mgno-lr", type=float, default=MGNO_GRID_TRAIN["max_lr"], help="MgNO (grid) one-cycle max lr")
    p.add_argument("--mgno-batch", type=int, default=MGNO_GRID_TRAIN["batch"])
    p.add_argument("--geom-fno", action="store_true", help="stage 2 also trains the FNO on a bounding-box grid")
    p.add_argument("--geom-grid", type=int, default=GEOM_GRID, help="cells per side of the FNO's box grid")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--smoke" in argv:
        p.set_defaults(**SMOKE)
    return p.parse_args(argv)


def mg_options(args: argparse.Namespace) -> dict[str, Any]:
    """SPON-MG's processor options: HierarchicalOptions' defaults and the ``--mg-option`` overrides."""
    known = {f.name for f in dataclasses.fields(HierarchicalOptions)}
    given = dict(args.mg_option)
    unknown = sorted(set(given) - known)
    if unknown:
        raise SystemExit(f"--mg-option {unknown[0]}: not a HierarchicalOptions key (known: {', '.join(sorted(known))})")
    return {**dataclasses.asdict(HierarchicalOptions()), **given}


def gnn_options() -> dict[str, Any]:
    return dataclasses.asdict(GNNOptions())


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
                   passes: int = 2, macs_batch: int = 2) -> dict[str, Any]:
    """``info`` (a training record) plus the test metrics of ``predict``.

    Mean relative L2 and H1 errors in the FE norms, max error on the Dirichlet DOFs,
    batched inference seconds per sample (batches of ``batch``, inputs in memory, after
    one warm-up batch, the fastest of ``passes`` passes over the test set; the metrics
    use that pass's predictions), multiply-adds per sample (counted on a batch of
    ``macs_batch``: work done once per batch is shared by its samples) and seconds per epoch.
    """
    a, u = data["split"]["test"]
    pred, seconds = timed_predict(predict, a, batch, passes)  # warm-up first: cycle levels, casts
    with torch.no_grad():
        pred, u = pred.double(), u.double()
        res = {"rel_l2": float(data["norm"].relative(pred, u).mean()),
               "rel_h1": float(data["h1"].relative(pred, u).mean()),
               "max_boundary_error": float((pred[:, data["mask"]] - u[:, data["mask"]]).abs().max()),
               "infer_s": seconds / a.shape[0]}
    res["macs"] = macs_per_sample(predict, a, macs_batch)
    epochs = info.get("epochs", 0.0)
    res["s_per_epoch"] = info["train_s"] / epochs if epochs else math.nan
    # a processor's own per-level count is one sample alone, so work done once per batch
    # (the hierarchical blocks' per-channel operator values) counts in full there, shared here
    print(f"  test rel L2 {res['rel_l2']:.4f}, rel H1 {res['rel_h1']:.4f}, {res['macs'] / 1e6:.1f} M multiply-adds "
          f"per sample, counted at batch {macs_batch}", flush=True)
    return {**info, **res}


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print()
    print(title)
    w = max(26, 2 + max(map(len, rows)))
    print(f"{'model':<{w}}{'rel L2':>9}{'rel H1':>9}{'max bnd err':>13}{'params':>11}{'epochs':>8}"
          f"{'s/epoch':>9}{'train [s]':>11}{'MMAC/sample':>13}{'infer [ms/sample]':>19}")
    def err(x: float) -> str:  # an untrained baseline's error can be huge: keep the columns
        return f"{x:>9.4f}" if abs(x) < 100 else f"{x:>9.1e}"

    for name, r in rows.items():
        print(f"{name:<{w}}{err(r['rel_l2'])}{err(r['rel_h1'])}{r['max_boundary_error']:>13.2e}"
              f"{r['params']:>11,}{r['epochs']:>8.1f}{r['s_per_epoch']:>9.2f}{r['train_s']:>11.0f}"
              f"{r['macs'] / 1e6:>13.1f}{r['infer_s'] * 1e3:>19.3f}")


def print_cost(model: Any, label: str) -> None:
    """The processor's own multiply-adds per level, where it counts them (the hierarchical processor)."""
    report = getattr(model.spon.processor, "cost_report", None)
    if report is not None:
        print(f"  {label}: " + report(model.spon.context), flush=True)


# ---------------------------------------------------------------------------------- models
def run_sponmg(data: dict[str, Any], args: argparse.Namespace, label: str,
               **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """SPON-MG (the hierarchical processor) on ``data``, through the Trainer, for ``--budget`` seconds."""
    check_load(label)
    model, info = run_spon(data, "hierarchical", {**mg_options(args), **overrides}, budget=args.budget,
                           lr=args.mg_lr, args=args, label=label, batch=args.gnn_batch, loss=args.mg_loss)
    print_cost(model, label)
    return model, info


def run_gnn(data: dict[str, Any], args: argparse.Namespace, label: str) -> tuple[Any, dict[str, Any]]:
    """SPON-GNN (GNNOptions' defaults), through the Trainer, for ``--budget`` seconds."""
    check_load(label)
    return run_spon(data, "gnn", gnn_options(), budget=args.budget, lr=args.gnn_lr, args=args, label=label,
                    batch=args.gnn_batch, loss=GNN_TRAIN["loss"])


def run_fno_seed(data: dict[str, Any], args: argparse.Namespace, seed: int) -> tuple[Any, dict[str, Any]]:
    """The pinned FNO with weights and data order of ``seed``."""
    check_load(f"FNO seed {seed}")
    return run_fno(data, argparse.Namespace(**{**vars(args), "seed": seed}))


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
def stage_darcy64(args: argparse.Namespace, counts: tuple[int, int, int]) -> tuple[dict, dict]:
    """Stage 1: the FNO (median of seeds), the grid MgNO, SPON-GNN and SPON-MG on unitsquare:n."""
    data = with_h1(dataset(args.n, 0, counts, Path(args.square_out)))
    rows: dict[str, dict[str, Any]] = {}
    if args.sponmg_only:
        model, info = run_sponmg(data, args, "SPON-MG")
        rows["SPON-MG"] = evaluate_model(model, data, info, args.infer_batch)
        print_table(f"Stage darcy64 (SPON-MG alone): unitsquare:{args.n} CG1; {'/'.join(map(str, counts))} samples", rows)
        return rows, {}
    fno_errors = []
    for k in range(args.fno_seeds):
        model, info = run_fno_seed(data, args, args.seed + k)
        rows[f"FNO (neuralop) seed {args.seed + k}"] = row = evaluate_model(model, data, info, args.infer_batch)
        fno_errors.append(row["rel_l2"])
    model, info = run_mgno_grid(data, args)
    rows["MgNO (grid)"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_gnn(data, args, "SPON-GNN")
    rows["SPON-GNN"] = evaluate_model(model, data, info, args.infer_batch)
    if args.mgno_processor:
        check_load("SPON-MgNO")
        model, info = run_spon(data, "multigrid", {}, budget=args.budget, lr=MGNO_PROCESSOR_TRAIN["lr"], args=args,
                               label="SPON-MgNO", batch=MGNO_PROCESSOR_TRAIN["batch"],
                               loss=MGNO_PROCESSOR_TRAIN["loss"])
        rows["SPON-MgNO (multigrid)"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_sponmg(data, args, "SPON-MG")
    rows["SPON-MG"] = evaluate_model(model, data, info, args.infer_batch)
    fno = statistics.median(fno_errors) if fno_errors else math.nan
    print_table(f"Stage darcy64: Darcy, unitsquare:{args.n} CG1, coefficient cg1; {'/'.join(map(str, counts))} "
                f"samples; test errors in the FE norms; FNO median rel L2 over {len(fno_errors)} seeds {fno:.4f}", rows)
    if fno > args.fno_max_err:
        print(f"warning: the FNO's median test relative L2 is {fno:.2%} > {args.fno_max_err:.0%}: the budget of "
              f"{args.budget:.0f} s is too small for the pinned FNO on this machine (raise --budget)")
    mg, gnn = rows["SPON-MG"], rows["SPON-GNN"]
    ratios = {"sponmg_vs_gnn_relL2": mg["rel_l2"] / gnn["rel_l2"],
              "sponmg_vs_fno_relL2": mg["rel_l2"] / fno,
              "sponmg_vs_mgno_grid_relL2": mg["rel_l2"] / rows["MgNO (grid)"]["rel_l2"],
              "sponmg_vs_gnn_relH1": mg["rel_h1"] / gnn["rel_h1"],
              "sponmg_epoch_vs_gnn": mg["s_per_epoch"] / gnn["s_per_epoch"]}
    return rows, ratios


def stage_geom(args: argparse.Namespace, data: dict[str, Any]) -> tuple[dict, dict]:
    """Stage 2: SPON-GNN and SPON-MG on algebraic levels only on the complex geometry."""
    rows: dict[str, dict[str, Any]] = {}
    model, info = run_gnn(data, args, "SPON-GNN geom")
    rows["SPON-GNN"] = evaluate_model(model, data, info, args.infer_batch)
    model, info = run_sponmg(data, args, "SPON-MG geom", geometric_levels=False)
    rows["SPON-MG (algebraic levels)"] = evaluate_model(model, data, info, args.infer_batch)
    if args.geom_fno:
        model, info = run_fno_box(data, args)
        rows["FNO (box grid)"] = evaluate_model(model, data, info, args.infer_batch)
    n = data["problem"].output_space.dim()
    print_table(f"Stage geom: Darcy, {data['spec']} CG1 ({n:,} DOFs), coefficient cg1; test errors in the FE norms",
                rows)
    return rows, {"sponmg_vs_gnn_geom_relL2": rows["SPON-MG (algebraic levels)"]["rel_l2"] / rows["SPON-GNN"]["rel_l2"]}


def stage_transfer(args: argparse.Namespace, fine: dict[str, Any], counts: tuple[int, int, int],
                   out: Path) -> tuple[dict, dict, Any]:
    """Stage 3: SPON-MG and SPON-GNN trained on the coarser refinement; SPON-MG tested on the finer one; the floor."""
    from fe_operators.models.build import context_for_model

    coarse = load_data(args.transfer_mesh, 1, counts, out)
    rows: dict[str, dict[str, Any]] = {}
    model, info = run_gnn(coarse, args, f"SPON-GNN {coarse['spec']}")
    key_g = f"SPON-GNN {coarse['spec']} -> itself"
    rows[key_g] = evaluate_model(model, coarse, info, args.infer_batch)
    model, info = run_sponmg(coarse, args, TRANSFER_LABEL)
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
    print_table(f"Stage transfer: trained on {coarse['spec']} ({coarse['problem'].output_space.dim():,} DOFs), "
                f"tested on {coarse['spec']} and on {fine['spec']} (stage geom's test samples)", rows)
    print(f"transfer floor: the {coarse['spec']} FE solution of the {fine['spec']} test coefficients (first "
          f"{n_floor}) has rel L2 {floor:.4f} against the {fine['spec']} truth;\n  a model with error "
          f"{e_c:.4f} on {coarse['spec']} can be expected to reach about hypot({e_c:.4f}, {floor:.4f}) = {best:.4f} "
          f"on {fine['spec']}; it reaches {e_f:.4f}")
    return rows, {"sponmg_transfer_vs_floor": e_f / best, "sponmg_vs_gnn_r1_relL2": e_c / rows[key_g]["rel_l2"]}, model


def stage_infer(args: argparse.Namespace, model: Any, out: Path) -> tuple[dict, dict, dict]:
    """Stage 4: SPON-MG batched inference on the large mesh against the best warm Firedrake solve."""
    import firedrake as fd

    from fe_operators.models.build import context_for_model
    from fe_operators.problems.darcy import DarcyProblem

    n = args.large_samples
    data = load_data(args.large_mesh, 2, (0, 0, n), out)
    problem = data["problem"]
    dofs = problem.output_space.dim()
    if dofs < 700_000:
        print(f"warning: {args.large_mesh} has {dofs:,} DOFs; the speed ratio is defined at about 800k")
    trained = True
    if model is None:
        saved = Path(args.out) / "runs" / TRANSFER_LABEL / "best.pt"
        if saved.exists():
            print(f"  SPON-MG: stage transfer's model from an earlier run, {saved}")
            model = load_spon(saved)
        else:
            from fe_operators.io import load_mesh

            from common import DofSPON
            from fe_operators.models import NormalizedModel, spon_for_problem

            trained = False
            print(f"  no trained SPON-MG (stage transfer not run, no {saved}): timing an untrained one built on "
                  f"{args.transfer_mesh}; its errors mean nothing")
            small = DarcyProblem(load_mesh(args.transfer_mesh), coefficient="cg1")
            model = DofSPON(NormalizedModel(spon_for_problem(small, "hierarchical", mesh_spec=args.transfer_mesh,
                                                             **mg_options(args))))
            model.eval()
    t0 = time.perf_counter()
    ctx = context_for_model(model.spon, problem, mesh_spec=data["spec"])
    setup_s = time.perf_counter() - t0
    check_load("the timed inference")
    info = {"epochs": 0.0, "train_s": 0.0, "params": sum(p.numel() for p in model.parameters())}
    row = evaluate_model(lambda a: model(a, context=ctx), data, info, args.large_batch, macs_batch=1)
    solves = {"direct (Cholesky)": fe_solve_time(data, args.solves)}
    params = {k: v for k, v in problem.params.items() if k != "solver_parameters"}
    gamg = {**data, "problem": DarcyProblem(problem.mesh, **params, solver_parameters=GAMG_PARAMETERS)}
    solves["CG + GAMG (rtol 1e-8)"] = fe_solve_time(gamg, args.solves)
    a0, u0 = (t[:1] for t in data["split"]["test"])
    u_gamg = gamg["problem"].solve({"a": fd.Function(problem.input_spaces["a"], val=a0[0].numpy().copy())})
    gamg_err = float(data["norm"].relative(torch.from_numpy(u_gamg.dat.data_ro.copy())[None], u0.double())[0])
    best = min(solves, key=solves.get)
    print()
    print(f"Stage infer: {data['spec']} ({dofs:,} DOFs), {n} samples; SPON-MG{'' if trained else ' (untrained)'} "
          f"inference in batches of {args.large_batch}: {row['infer_s']:.3f} s/sample (encode, forward, decode); "
          f"hierarchy and context build {setup_s:.1f} s, once per mesh (not counted); rel L2 {row['rel_l2']:.4f}, "
          f"rel H1 {row['rel_h1']:.4f}, max boundary error {row['max_boundary_error']:.2e}, "
          f"{row['macs'] / 1e9:.2f} G multiply-adds per sample")
    for name, s in solves.items():
        print(f"  FE solve, {name}, assembly included: {s:.3f} s (median of {args.solves}, warm)"
              + ("  <- best" if name == best else ""))
    print(f"  CG + GAMG solution vs the stored direct one: rel L2 {gamg_err:.1e}")
    return ({"SPON-MG": {**row, "context_setup_s": setup_s, "trained": trained}},
            {"sponmg_infer_vs_fe_solve_800k": row["infer_s"] / solves[best]}, solves)


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # --sponmg-only trains no FNO, so it runs where neuralop is not installed (CI)
    need_fno = ("darcy64" in args.stage and not args.sponmg_only) or args.geom_fno
    nl_version = start_training_bench(args, need_neuralop=need_fno)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.square_out).mkdir(parents=True, exist_ok=True)
    counts = (args.train, args.val, args.test)
    print(machine_summary())
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; neuralop {nl_version}; budget "
          f"{args.budget:.0f} s per model, {args.threads} torch threads; stages {', '.join(args.stage)}"
          f"{' (smoke run: the numbers mean nothing)' if args.smoke else ''}", flush=True)
    print(f"SPON-MG: hierarchical processor {mg_options(args)}; lr {args.mg_lr}, batch {args.gnn_batch}, "
          f"{args.mg_loss} loss", flush=True)
    print(f"SPON-GNN: {gnn_options()}; lr {args.gnn_lr}, batch {args.gnn_batch}, {GNN_TRAIN['loss']} loss; both "
          f"through fe_operators.train.Trainer, cosine to 0 over the budget, best validation weights restored",
          flush=True)
    check_load("the start")
    t_start = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args), "rows": {}}
    ratios: dict[str, float] = {}
    transfer_model = None
    stages = [s for s in STAGES if s in args.stage]
    if "darcy64" in stages:
        results["rows"]["darcy64"], r = stage_darcy64(args, counts)
        ratios.update(r)
    geom = load_data(args.geom_mesh, 0, counts, out) if {"geom", "transfer"} & set(stages) else None
    if "geom" in stages:
        results["rows"]["geom"], r = stage_geom(args, geom)
        ratios.update(r)
    if "transfer" in stages:
        results["rows"]["transfer"], r, transfer_model = stage_transfer(args, geom, counts, out)
        ratios.update(r)
    if "infer" in stages:
        results["rows"]["infer"], r, results["fe_solve_s"] = stage_infer(args, transfer_model, out)
        ratios.update(r)

    print()
    bnd = max((row["max_boundary_error"] for stage in results["rows"].values() for name, row in stage.items()
               if name.startswith("SPON")), default=0.0)
    print(f"max boundary error of the SPONs: {bnd:.3g} (target 0); total {time.perf_counter() - t_start:.0f} s")
    ordered = {k: ratios[k] for k in TARGETS if k in ratios}
    results["ratios"] = ordered
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print_ratios(ordered, {k: v for k, v in TARGETS.items() if k in ordered}, ", max boundary error 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
