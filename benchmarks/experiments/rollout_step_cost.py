"""The rollout SPON's step at batch 1 against the FE time step on bench-dynamics' cylinder data.

What ``ratio dyn_step_vs_fe_step`` compares, for several processor designs in one process:
rounds of the generator's warm FE step (:func:`bench_dynamics.fe_step_time`, assembly
included) interleaved with each design's step (:func:`bench_dynamics.step_time`, one torch
thread, inside :meth:`RolloutSPON.inference`), medians over the rounds; untrained weights
(the step's cost does not depend on them).  Prints each design's multiply-adds
(``cost_report`` where the processor has one) and the ratio; ``--profile NAME`` prints the
top ops of NAME's step (torch.profiler) and, with ``--plain``, of the step outside
``inference()``.  Each design is timed with the traced step (``inference()``'s default) and
untraced (``inference(traced=False)``: the frozen processor, module by module).

The data: bench-dynamics' held-out trajectory file (``make bench-dynamics`` writes it; only
read here).  Usage::

    python benchmarks/experiments/rollout_step_cost.py [--data out/bench/dynamics] [--rounds 5]
        [--designs gnn48,hier,hier_gelu] [--profile hier]

Measured (2 loaded cores, load 4-6, Dec 2026), e.g. ``--designs gnn48,hier_defaults,hier_gelu,hier``:
FE 38.4 ms; gnn48 (the earlier default) 148 ms (ratio 3.87); hier_defaults 10.5 ms (0.274);
hier_gelu 7.3 ms (0.191); hier (the bench's default now) 5.9 ms (0.155).
With the traced step (``--designs hier --rounds 7``, one shared core, load about 5, Dec 2026):
FE 48.2 ms; hier traced 6.83 ms (ratio 0.142), untraced 7.86 ms (0.163).
After the operator convolution's fixes (no per-row accumulator, the LayerNorm fused into it,
ops as plain ``Library`` fragments; ``--designs hier --rounds 5``, one shared core, Dec 2026):
FE 48.2 ms, hier traced 4.18 ms (ratio 0.087); the build before them, run just after: FE
42.8 ms, hier traced 6.58 ms (0.154).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # Firedrake/PETSc single-threaded, as the generator
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

#: name -> (processor, options)
DESIGNS = {
    "gnn48": ("gnn", {"width": 48, "depth": 4, "latent_cells": 0}),
    "gnn16": ("gnn", {"width": 16, "depth": 2, "latent_cells": 0}),
    "hier_defaults": ("hierarchical", {}),
    "hier_gelu": ("hierarchical", {"width": 32, "min_width": 8}),
    "hier": ("hierarchical", {"width": 32, "min_width": 8, "act": "relu", "spectral_layers": 1}),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="out/bench/dynamics", help="bench-dynamics' --out (read only)")
    p.add_argument("--designs", default="gnn48,hier_gelu,hier")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", default=None, help="a design whose step's top ops to print")
    p.add_argument("--plain", action="store_true", help="with --profile: also the step outside inference()")
    args = p.parse_args(argv)

    from fe_operators.petsc_argv import import_firedrake

    import_firedrake()
    import torch

    import bench_dynamics as bd
    from fe_operators.data.trajectories import TrajectoryFile, read_trajectories
    from fe_operators.models.rollout_build import rollout_spon_for_problem

    files = sorted(Path(args.data).glob("cylinder-test-*.h5"))
    if not files:
        raise SystemExit(f"rollout_step_cost: no cylinder-test-*.h5 in {args.data}: run make bench-dynamics first")
    problem = TrajectoryFile(files[0]).rebuild_problem()
    test = read_trajectories(files[0], [0])
    s1, p1 = torch.as_tensor(test.states[:1, 0]), torch.as_tensor(test.params[:1])
    print(f"{files[0]}: {problem.n_dofs} DOFs, Re {float(test.params[0, 0]):.1f}", flush=True)
    models = {}
    for name in args.designs.split(","):
        proc, opts = DESIGNS[name]
        torch.manual_seed(0)
        model = rollout_spon_for_problem(problem, proc, params={"Re": float(test.params[0, 0])}, **opts)
        model.fit_normalizers(test.states[:, :20], test.params)
        models[name] = model
        cost = getattr(model.spon.processor, "cost_report", None)
        total = cost(model.spon.context).splitlines()[-1].strip() if cost else "(no cost report)"
        print(f"{name}: {proc} {opts}, {sum(q.numel() for q in model.parameters()):,} parameters; {total}",
              flush=True)
    variants = [(name, traced) for name in models for traced in (True, False)]
    times: dict[str, list[float]] = {n: [] for n in ["fe", *(f"{n}{'' if t else ' untraced'}" for n, t in variants)]}
    for _ in range(args.rounds):
        times["fe"].append(bd.fe_step_time(problem, test, 0, 8)["median"])
        for name, traced in variants:
            model = models[name]
            with model.inference(traced=traced):
                model.step(s1, p1)  # the trace (once per shape), outside the timing
                times[f"{name}{'' if traced else ' untraced'}"].append(bd.step_time(lambda: model.step(s1, p1), 6))
    fe = statistics.median(times["fe"])
    print(f"FE step (warm, assembly included): median {fe * 1e3:.1f} ms over {args.rounds} rounds "
          f"{[round(t * 1e3, 1) for t in times['fe']]}")
    for name in times:
        if name == "fe":
            continue
        t = statistics.median(times[name])
        print(f"{name:23s} step at batch 1 {t * 1e3:8.2f} ms   ratio {t / fe:.3f}   rounds "
              f"{[round(x * 1e3, 1) for x in times[name]]}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        torch.set_num_threads(1)
        model = models[args.profile]
        for label, ctx in (("inference", model.inference), *((("plain", torch.no_grad),) if args.plain else ())):
            with ctx():
                model.step(s1, p1)
                with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                    for _ in range(5):
                        model.step(s1, p1)
            print(f"{args.profile} ({label}), 5 steps:")
            print(prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=28, max_shapes_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
