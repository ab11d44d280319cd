"""Linear elasticity on the plate with holes: random stiffness and random traction.

Plane strain, clamped on the left side (``u = 0``), a random traction on the right side,
free elsewhere (holes included); inputs Young's modulus ``E`` (log-normal field, CG1) and
the traction ``load`` (vector field), output the displacement (vector CG1).  A SPON (MLP
processor) maps ``(E, load)`` to ``u``; the clamp holds exactly (boundary error 0).

``python demos/elasticity_plate.py [--smoke]`` (defaults: about two minutes; ``--smoke``:
seconds).  Output in ``out/elasticity_plate[-smoke]/``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from main_job import demo_parser, run_pipeline  # noqa: E402  (sets up Firedrake's environment)


def main(argv: list[str] | None = None) -> int:
    args = demo_parser(__doc__).parse_args(argv)
    samples, epochs = (64, 2) if args.smoke else (4000, 30)
    started = time.perf_counter()
    print("Elasticity on plate_holes: clamped left, traction right; inputs E and load; SPON with the MLP "
          "processor", flush=True)
    run_pipeline(
        args.out or f"out/elasticity_plate{'-smoke' if args.smoke else ''}", problem="elasticity",
        mesh="plate_holes", samples=samples, seed=0, retrain=args.retrain,
        model={"type": "spon", "processor": "mlp", "hidden": [256]},
        # zero boundary data (the clamp) and no lifting input: per-DOF statistics are safe
        data={"split": [0.8, 0.1, 0.1], "normalize_inputs": "dof", "normalize_output": "none"},
        train={"epochs": epochs, "batch_size": 32, "lr": 1e-3, "threads": 1, "metrics": ["rel_l2", "rel_h1"],
               "scheduler": {"name": "cosine", "warmup_steps": 20}},
    )
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
