"""Two remedies for SPON-GNN's 32x32 -> 64x64 transfer, against the default, at one budget.

Each variant trains on bench-spon's 32x32 Darcy data (run ``make bench-spon`` first: it
writes the data under ``out/bench/spon``) and prints its test error on 32x32 and 64x64,
``gnn_transfer_err`` and ``gnn_transfer_vs_floor`` as bench-spon defines them:

* baseline: the default GNN (``GNNOptions``' defaults);
* physical edges: edge features divided by the 32x32 mean edge length on every mesh
  (instead of each mesh's own), so a message sees physical geometry;
* + diffusive hops 8: the default plus deep propagation with diffusive hop scaling.

Usage: ``python benchmarks/experiments/transfer_remedies.py [budget seconds, default 300]``.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # Firedrake/PETSc single-threaded; torch threads set below
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

import torch  # noqa: E402

import bench_spon  # noqa: E402
import common  # noqa: E402


def main(argv: list[str]) -> int:
    budget = float(argv[0]) if argv else 300.0
    from fe_operators.petsc_argv import import_firedrake

    import_firedrake()  # without this script's flags (Firedrake hands sys.argv to PETSc)

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    import fe_operators.models.processors.gnn as gp
    from fe_operators import models

    torch.set_num_threads(2)
    args = bench_spon.parse_args(["--no-install"])
    out = Path(args.out)
    counts = (args.train, args.val, args.test)
    fine = common.dataset(64, 0, counts, out)
    coarse = common.dataset(32, 1, counts, out)
    floor = common.transfer_floor(fine, coarse, args.floor_samples)
    print(f"floor {floor:.4f}", flush=True)
    base: dict = {}  # the processor's defaults (GNNOptions)
    h32 = float(models.context_from_problem(coarse["problem"]).length_scale())
    mesh_scaled = gp.edge_features
    coarse_mask = models.context_from_problem(coarse["problem"]).mask[:, 0]
    fine_ctx = models.context_from_problem(fine["problem"])
    for name, opts, physical in [("baseline", base, False), ("physical edges", base, True),
                                 ("+ diffusive hops 8", {**base, "hops": 8}, False)]:
        gp.edge_features = (lambda e: e / h32) if physical else mesh_scaled
        model, _ = common.run_spon(coarse, "gnn", opts, budget=budget, lr=args.gnn_lr, args=args, label=name,
                                       batch=args.gnn_batch)
        e32 = common.evaluate(model, *coarse["split"]["test"], coarse["norm"], coarse_mask, 20)["rel_l2"]
        e64 = common.evaluate(lambda a: model(a, context=fine_ctx), *fine["split"]["test"], fine["norm"],
                                  fine_ctx.mask[:, 0], 20)["rel_l2"]
        print(f"RESULT {name:<20} e32 {e32:.4f} e64 {e64:.4f} transfer_err {e64 / e32:.3f} "
              f"vs_floor {e64 / math.hypot(e32, floor):.3f}", flush=True)
    gp.edge_features = mesh_scaled
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
