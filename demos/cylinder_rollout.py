"""Flow past the cylinder: a rollout surrogate, from trajectories to a ParaView time series.

The whole trajectory pipeline on a small configuration, with the commands of the CLI
(run in-process here; the shell equivalents are printed):

1. ``fe-operators generate navier_stokes`` — Taylor–Hood Navier–Stokes past the DFG
   cylinder (a coarse gmsh mesh of the DFG geometry, :func:`fe_operators.meshes.dfg.dfg_mesh`
   at resolution 0.3: about 4.8k DOFs), a few Reynolds numbers in 100–150, a short
   spin-up (the family's initial perturbation sheds vortices from the start), then
   states ``(u, p)`` every step;
2. ``fe-operators train`` — ``model.type: rollout_spon``: SPON as a one-step map
   ``s_{n+1} = s_n + Δ_θ(s_n, Re)`` (a small GNN processor), the inflow and no-slip
   values lifted exactly at every step, a one-step loss with training noise
   (``model.unroll: k`` for a k-step unrolled loss), a 60 s training budget;
3. ``fe-operators evaluate --data`` — roll out from the first stored state of the held-out
   trajectory over the stored horizon; the relative L2 error of the state and of the
   velocity per step (printed), against the persistence baseline ``s_n = s_0``, the
   boundary error (0), ``errors.png`` and ``rollout.pvd`` (predicted, reference and error,
   one frame per step, for ParaView).

``python demos/cylinder_rollout.py [--smoke]`` (defaults: 6 trajectories of 40 stored
steps, a 60 s training budget, about two minutes on 2 cores; ``--smoke``: a coarser
mesh, 3 short trajectories, one epoch, seconds).  Output in ``out/cylinder_rollout[-smoke]/``.
A surrogate this small, trained on four trajectories for a minute, drifts from the
reference within a shedding period (measured on a loaded 2-core machine: mean relative
L2 of the state over the 40 steps 31 %, persistence 39 %; the boundary error 0);
``make bench-dynamics`` trains on 24 Reynolds numbers for minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from main_job import demo_parser  # noqa: E402  (sets up Firedrake's environment)


def main(argv: list[str] | None = None) -> int:
    args = demo_parser(__doc__).parse_args(argv)
    from fe_operators.cli.evaluate import main_evaluate
    from fe_operators.cli.generate import main_generate
    from fe_operators.cli.train import main_train
    from fe_operators.meshes.dfg import dfg_mesh

    if args.smoke:
        resolution, samples, steps, spinup, split = 0.2, 3, 6, 0, [1, 1, 1]
        train = {"epochs": 1, "time_budget": None}
        model = {"width": 8, "depth": 1, "latent_cells": 0}
    else:
        resolution, samples, steps, spinup, split = 0.3, 6, 40, 20, [4, 1, 1]
        train = {"epochs": 1000, "time_budget": 60.0}
        model = {"width": 16, "depth": 2, "latent_cells": 0}  # small: hundreds of steps in the budget
    out = Path(args.out or f"out/cylinder_rollout{'-smoke' if args.smoke else ''}").absolute()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print("cylinder flow: Navier-Stokes trajectories (Re in 100-150) -> rollout SPON (GNN processor) -> "
          "rollout errors, plot and .pvd", flush=True)

    mesh = dfg_mesh(out / "meshes", resolution)
    data = out / "data.h5"
    gen = ["navier_stokes", "--mesh", str(mesh), "--samples", str(samples), "--out", str(data),
           "--steps", str(steps), "--spinup", str(spinup), "--param", "dt=0.01",
           "--param", "reynolds_range=[100, 150]", "--quiet"]
    print("$ fe-operators generate " + " ".join(gen), flush=True)
    if main_generate(gen) != 0:  # resumes (reuses) a complete file of the same settings
        return 1
    print(f"[{time.perf_counter() - start:6.1f} s] data: {samples} trajectories x {steps + 1} states in {data}",
          flush=True)

    cfg = {"data": {"path": str(data), "split": split},
           "model": {"type": "rollout_spon", "processor": "gnn", **model, "unroll": 1, "noise_std": 0.01,
                     "loss": "l2"},
           "train": {"lr": 3e-3, "batch_size": 4, "threads": 1, "progress": False, "seed": 0, **train},
           "out": {"dir": str(out / "run")}}
    (out / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if (args.retrain or not (out / "run" / "best.pt").exists()) and (out / "run").exists():
        shutil.rmtree(out / "run")  # an unfinished run, or --retrain
    if (out / "run" / "best.pt").exists():
        print(f"[{time.perf_counter() - start:6.1f} s] train: reusing the run in {out / 'run'} (--retrain to train "
              "again)", flush=True)
    else:
        print(f"$ fe-operators train --config {out / 'run.yaml'}", flush=True)
        if main_train(["--config", str(out / "run.yaml")]) != 0:
            return 1
        print(f"[{time.perf_counter() - start:6.1f} s] train: done", flush=True)

    eval_dir = out / "run" / "eval-data-test"
    print(f"$ fe-operators evaluate {out / 'run'} --data {data}", flush=True)
    if main_evaluate([str(out / "run"), "--data", str(data), "--out", str(eval_dir)]) != 0:
        return 1
    summary = json.loads((eval_dir / "rollout.json").read_text())["summary"]
    print(f"[{time.perf_counter() - start:6.1f} s] rollout of the held-out Reynolds number over {steps} steps: "
          f"relative L2 (mean over the steps) of the state {summary['state']['mean_over_horizon']:.2%} (persistence "
          f"s_n = s_0: {summary['persistence']['mean_over_horizon']:.2%}), of the velocity "
          f"{summary['velocity']['mean_over_horizon']:.2%}; max boundary error {summary['boundary_error']:.1e}; "
          f"plot {eval_dir / 'errors.png'}, ParaView {eval_dir / 'rollout.pvd'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
