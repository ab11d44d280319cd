"""Poisson's equation on the plate with holes: random source and random boundary data.

``-Δu = f`` in the plate, ``u = g`` on its whole boundary (outer sides and holes), with
``f`` and ``g`` Matérn random fields; a SPON (MLP processor) maps ``(f, g)`` to ``u``.
Its decoder reads the boundary values from the input ``g`` and writes them into the
output exactly (with or without normalizers: the model re-imposes the physical ``g``),
so the max boundary error of the table is 0.

``python demos/poisson_plate.py [--smoke]`` (defaults: about a minute; ``--smoke``:
seconds).  Output in ``out/poisson_plate[-smoke]/``.
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
    print("Poisson on plate_holes: inputs f (source) and g (boundary data); SPON with the MLP processor", flush=True)
    run_pipeline(
        args.out or f"out/poisson_plate{'-smoke' if args.smoke else ''}", problem="poisson", mesh="plate_holes",
        samples=samples, seed=0, retrain=args.retrain,
        model={"type": "spon", "processor": "mlp", "hidden": [512, 512]},
        data={"split": [0.8, 0.1, 0.1], "normalize_inputs": "none", "normalize_output": "none"},
        train={"epochs": epochs, "batch_size": 32, "lr": 1e-3, "threads": 1, "metrics": ["rel_l2", "rel_h1"],
               "scheduler": {"name": "cosine", "warmup_steps": 20}},
    )
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
