"""Darcy flow on the unit square with a mesh-agnostic SPON (GNN processor), then on a finer mesh.

The FNO/MgNO benchmark problem, ``-div(a grad u) = 1``, ``u = 0`` on the boundary, with the
default thresholded coefficient ``a in {3, 12}`` (``dg0``):

1. generate samples on ``unitsquare:20`` and train a SPON with the GNN processor
   (message passing on the DOF graph, each layer followed by a Fourier stage on a latent
   grid over the domain);
2. evaluate it on the held-out test split;
3. generate samples on a finer mesh (``unitsquare:28``) and evaluate the *same weights*
   there (``fe-operators evaluate``, which runs on the mesh the dataset records): the model
   gets that mesh's context.

Inputs and outputs are normalised per channel ('global': one mean and std each), so
nothing in the checkpoint is tied to the training mesh's nodes; the boundary values stay
exact (the trainer re-imposes them after decoding).

``python demos/darcy_unitsquare.py [--smoke]`` (defaults: a few minutes; ``--smoke``:
seconds).  Output in ``out/darcy_unitsquare[-smoke]/``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from main_job import demo_parser, run_pipeline  # noqa: E402  (sets up Firedrake's environment)


def main(argv: list[str] | None = None) -> int:
    args = demo_parser(__doc__).parse_args(argv)
    n, fine, samples, epochs = (8, 10, 48, 2) if args.smoke else (20, 28, 1000, 15)
    out = Path(args.out or f"out/darcy_unitsquare{'-smoke' if args.smoke else ''}")
    started = time.perf_counter()
    print(f"Darcy on unitsquare:{n}, coefficient 'dg0'; SPON with the GNN processor", flush=True)
    run_pipeline(
        out, problem="darcy", mesh=f"unitsquare:{n}", samples=samples, seed=0, retrain=args.retrain,
        # a 20x20 mesh: a latent grid of 8 cells (4 modes) resolves what the mesh does
        model={"type": "spon", "processor": "gnn", "width": 32, "depth": 2, "latent_cells": 8, "latent_modes": 4},
        data={"split": [0.8, 0.1, 0.1], "normalize_inputs": "global", "normalize_output": "global"},
        train={"epochs": epochs, "batch_size": 8, "lr": 3e-3, "threads": 2, "metrics": ["rel_l2", "rel_h1"],
               "scheduler": {"name": "cosine", "warmup_steps": 20}},
    )

    from fe_operators.data import generate_dataset
    from fe_operators.evaluation import evaluate_run, format_table

    other = out / f"other_unitsquare{fine}.h5"
    generate_dataset("darcy", f"unitsquare:{fine}", max(samples // 10, 8), other, seed=1, progress=False)
    result = evaluate_run(out / "run", other, out=out / "run" / f"eval-unitsquare{fine}")  # the data's own mesh
    print(f"the same weights on unitsquare:{fine} (the dataset's own mesh):")
    print(format_table(result))
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
