"""SPON-GNN training steps on a non-convex domain, against another checkout, in one run.

The case of issue 15 item 7, at small scale: Poisson with CG2 output on the shipped
``crescent`` mesh (a non-convex domain whose bounding box it covers about half of), the
``gnn`` processor at its defaults, batch 10, float32 weights.  One *training step* is
forward, a mean-square loss, backward and an AdamW step of the whole SPON; also timed is
the same step of the processor alone.  On a shared machine only an interleaved comparison
means anything: ``--against DIR`` runs this script in the checkout ``DIR`` (for example a
worktree of c81c75f, made with ``git worktree add --detach DIR c81c75f``) and in this one,
alternating, ``--rounds`` times, and prints the medians and
``ratio gnn_nonconvex_step_vs_ref`` (this checkout's seconds per step over ``DIR``'s;
target <= 1.2).  Both CPU seconds of the process (steadier under load) and wall seconds
are reported; the ratio is of CPU seconds.

Without ``--against`` it prints this checkout's medians and the latent grid's sizes
(nonzeros per row of the pooling, the padded FFT grid).

Usage::

    python benchmarks/bench_gnn_nonconvex.py [--against ../gnn-old] [--rounds 5] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
TARGET = 1.2


def _worker(mesh: str, steps: int, batch: int, threads: int, deterministic: bool) -> dict:
    """Time the steps in the checkout this process imports fe_operators from; a JSON-able dict."""
    import torch

    try:
        from fe_operators.petsc_argv import import_firedrake

        fd = import_firedrake()
    except ImportError:  # older checkouts
        import firedrake as fd
    import fe_operators
    from fe_operators.io.readers import load_mesh
    from fe_operators.models import spon_for_problem
    from fe_operators.problems.poisson import PoissonProblem

    torch.set_num_threads(threads)
    # as fe_operators.train.Trainer does by default (train.deterministic)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.manual_seed(0)
    base, _, refine = mesh.partition("/r")
    m = load_mesh(base)
    if refine:  # by hand: older checkouts do not read the /rK suffix
        m = fd.MeshHierarchy(m, int(refine))[-1]
    problem = PoissonProblem(m, degree=2)
    model = spon_for_problem(problem, "gnn")
    ctx = model.context
    n = ctx.coords.shape[0]
    x = {name: torch.randn(batch, V.dim(), dtype=torch.float64) for name, V in problem.input_spaces.items()}
    target = torch.randn(batch, n, dtype=torch.float64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def spon_step() -> None:
        opt.zero_grad()
        ((model(x) - target) ** 2).mean().backward()
        opt.step()

    proc = model.processor
    h = torch.randn(batch, n, proc.in_channels)
    popt = torch.optim.AdamW(proc.parameters(), lr=1e-4)

    def processor_step() -> None:
        popt.zero_grad()
        proc(h, ctx).square().mean().backward()
        popt.step()

    out = {"checkout": str(Path(fe_operators.__file__).resolve().parents[1]), "nodes": n}
    grid = getattr(proc, "grid_transfer", None)
    if grid is not None:
        interp, pool = grid(ctx, torch.float32)
        # one CSR matrix (74a1563 .. a4a2a98) or two factors (GridPooling: local average, fill)
        parts = [pool] if isinstance(pool, torch.Tensor) else [pool.local] + [pool.fill] * (pool.fill is not None)
        rows = [m.crow_indices().diff() for m in parts]
        out.update(pool_nnz=sum(int(m.values().numel()) for m in parts),
                   pool_row_max=max(int(r.max()) for r in rows),
                   pool_row_mean=round(sum(float(r.float().mean()) for r in rows), 1))
        out["fft_grid"] = int(getattr(proc.latent[0], "size", proc.latent_cells + 1))
    for name, fn in (("spon", spon_step), ("processor", processor_step)):
        fn()  # warm-up (builds and caches the grid transfer)
        cpu, wall = [], []
        for _ in range(steps):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        out[f"{name}_cpu"], out[f"{name}_wall"] = statistics.median(cpu), statistics.median(wall)
    return out


def _run(checkout: Path, args: argparse.Namespace) -> dict:
    """One worker process importing fe_operators from ``checkout``."""
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(HERE), "--worker", "--mesh", args.mesh, "--steps", str(args.steps), "--batch", str(args.batch),
           "--threads", str(args.threads)] + ([] if args.deterministic else ["--no-deterministic"])
    res = subprocess.run(cmd, env=env, cwd=checkout, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"worker in {checkout} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", type=Path, help="another checkout (e.g. a worktree of c81c75f) to compare with")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each: one process per checkout)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per process (median)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--mesh", default="crescent", help="mesh spec (default: the shipped crescent)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the workers")
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="without torch.use_deterministic_algorithms (the Trainer's default has it)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.mesh, args.steps, args.batch, args.threads, args.deterministic)))
        return
    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import check_load, machine_summary

    print(machine_summary(), flush=True)
    print(f"{args.mesh}, Poisson CG2, SPON-GNN defaults, batch {args.batch}, {args.threads} torch thread(s); "
          f"{args.rounds} interleaved rounds x {args.steps} steps", flush=True)
    checkouts = {"new": REPO} if args.against is None else {"ref": args.against.resolve(), "new": REPO}
    runs: dict[str, list[dict]] = {k: [] for k in checkouts}
    loads = []
    for r in range(args.rounds):
        for key, path in (checkouts.items() if r % 2 == 0 else reversed(checkouts.items())):
            loads.append(os.getloadavg()[0])
            runs[key].append(_run(path, args))
            d = runs[key][-1]
            print(f"round {r} {key:3s} spon {d['spon_cpu']:.3f} s cpu / {d['spon_wall']:.3f} s wall, "
                  f"processor {d['processor_cpu']:.3f} / {d['processor_wall']:.3f}  (load {loads[-1]:.1f})",
                  flush=True)
    check_load("the end of the timing")
    med = {k: {m: statistics.median(d[m] for d in v) for m in ("spon_cpu", "spon_wall", "processor_cpu",
                                                                  "processor_wall")} for k, v in runs.items()}
    for k, v in runs.items():
        info = {m: v[0][m] for m in ("nodes", "pool_nnz", "pool_row_max", "pool_row_mean", "fft_grid") if m in v[0]}
        print(f"{k:3s} {v[0]['checkout']}: {info}")
        print(f"    median s/step: spon {med[k]['spon_cpu']:.3f} cpu, {med[k]['spon_wall']:.3f} wall; "
              f"processor {med[k]['processor_cpu']:.3f} cpu, {med[k]['processor_wall']:.3f} wall")
    print(f"load average over the run: median {statistics.median(loads):.1f} on {os.cpu_count()} cores")
    if "ref" in med:
        ratio = med["new"]["spon_cpu"] / med["ref"]["spon_cpu"]
        wall = med["new"]["spon_wall"] / med["ref"]["spon_wall"]
        proc = med["new"]["processor_cpu"] / med["ref"]["processor_cpu"]
        print(f"ratio gnn_nonconvex_step_vs_ref {ratio:.3f} (target <= {TARGET}; wall {wall:.3f}, "
              f"processor alone {proc:.3f})")


if __name__ == "__main__":
    main()
