"""``make bench-pc``: learned preconditioners against classical ones in PETSc CG solves.

Variable-coefficient diffusion :math:`-\\nabla\\cdot(k\\nabla u) = 1`, :math:`u = 0`, CG1,
rtol 1e-8 on the true residual from a zero initial guess, coefficients from the
training family (log-normal Matérn field, variance 2: contrast 1e2-1e4) with a seed
never used in training. Every method solves the same matrices in the same run, through
:func:`fe_operators.precond.evaluate.evaluate_preconditioners` (set-up = PETSc's
``PCSetUp`` event, solve = ``KSPSolve``, assembly excluded; one warm-up coefficient,
then ``--samples`` new coefficients, each solved ``--repeats`` times, fastest kept).

Stages:

1. **train** — the NeuralMG smoother network (``precond train``, kind ``neural_mg``, on
   the ``unitsquare:8/r3`` hierarchy) and the DCDM network (kind ``dcdm``, on
   ``unitsquare:16/r2``); cached in ``--out`` by configuration, so a rerun skips them.
2. **options** — option sets of GAMG and of Firedrake's GMG (:data:`VARIANTS`: strength
   thresholds, aggregation smoothing; Chebyshev/Jacobi against (S)SOR smoothing) on the
   second size; the fastest of each is its "best options" for the rest of the run.
3. **sizes** — ``unitsquare:16/r4``, ``/r5``, ``/r6`` (66,049, 263,169 and 1,050,625
   DOFs): NeuralMG, NeuralMG with rediscretised coarse operators (``neuralmg_coarse
   rediscretise``), the same Galerkin V-cycle with classical l1-Jacobi weights, CG+GAMG,
   CG+Firedrake GMG (``pc_type mg`` on the same hierarchy), CG+ICC(0); DCDM (FCG, mmax 2)
   on the sizes up to ``--dcdm-max-dofs`` (default: the smallest; its network is a
   Python/torch call per iteration, ~1 s at 66k DOFs). CG+hypre BoomerAMG is printed as unavailable
   when this PETSc has no hypre (Debian's hypre does not build with PETSc 3.26).
4. **meshes** — the unstructured ``plate_holes/r2`` and the 3D ``box_cavity/r1``
   hierarchies: NeuralMG (the same network, trained on the unit square) against GAMG.
5. **out of family** — on ``unitsquare:16/r4``: a 1:10^4 checkerboard coefficient (4×4
   squares) and an anisotropic tensor diag(1, 100): every learned PC's iterations,
   fallbacks and convergence, GAMG beside them.

Printed: the machine, every table, and ``ratio`` lines —
``pc_vs_best_classical_time_1M`` (NeuralMG set-up + solve over the fastest classical
method's, at the largest size; target <= 1), ``pc_its_growth`` (NeuralMG iterations at
the largest over the smallest size; target <= 1.2; ``pc_its_growth_rediscretised`` the same
with rediscretised coarse operators), ``pc_rediscretised_vs_galerkin_setup_1M`` (report),
``pc_its_1M`` (target <= 10),
``dcdm_its_vs_icc_<size>`` (at the largest size DCDM ran), ``pc_its_vs_gamg_unstructured``
and ``pc_its_vs_gamg_3d`` (target <= 1).

Run: ``make bench-pc`` (about 15 minutes here; ``--quick`` for a half-minute check).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_summary  # noqa: E402

#: option sets of the classical multigrids tried on the selection size (the fastest of each is used)
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "gamg": {
        "default": {},
        "threshold 0.02": {"pc_gamg_threshold": 0.02},
        "threshold 0.05, cheby(3)": {"pc_gamg_threshold": 0.05, "mg_levels_ksp_max_it": 3},
        "agg_nsmooths 0": {"pc_gamg_agg_nsmooths": 0},
    },
    "gmg": {
        "cheby(2)/jacobi": {},
        "cheby(2)/ssor": {"mg_levels_pc_type": "sor"},
        "richardson/ssor(1)": {"mg_levels_ksp_type": "richardson", "mg_levels_ksp_max_it": 1,
                               "mg_levels_pc_type": "sor"},
        "richardson/ssor(2)": {"mg_levels_ksp_type": "richardson", "mg_levels_ksp_max_it": 2,
                               "mg_levels_pc_type": "sor"},
    },
}

#: the training configurations (``precond train``), written next to their checkpoints
NEURAL_MG_CONFIG: dict[str, Any] = {
    "kind": "neural_mg",
    "family": {"mesh": "unitsquare:8/r3", "coefficient": "lognormal", "variance": 2.0, "samples": 8},
    "smoother": {"hidden": 8, "layers": 1, "sweeps": 2},
    "train": {"steps": 300, "lr": 3e-3, "seed": 0},
}
DCDM_CONFIG: dict[str, Any] = {
    "kind": "dcdm",
    "family": {"mesh": "unitsquare:16/r2", "coefficient": "lognormal", "variance": 2.0, "samples": 4},
    "dcdm": {"width": 8, "layers": 2},
    "train": {"steps": 300, "lr": 3e-3, "seed": 0},
}

SIZES = ("unitsquare:16/r4", "unitsquare:16/r5", "unitsquare:16/r6")
CLASSICAL = ("gamg", "gmg", "icc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/bench/pc", help="checkpoints and configurations (default out/bench/pc)")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated hierarchy specs, smallest first")
    p.add_argument("--samples", type=int, default=2, help="measured coefficients per size (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="solves per coefficient, fastest kept (default 2)")
    p.add_argument("--dcdm-max-dofs", type=int, default=70_000,
                   help="run DCDM on sizes up to this many DOFs (default 70000, the smallest size: its network "
                        "costs ~1 s per application at 66k DOFs here, ~20 min per solve at 1.05M)")
    p.add_argument("--unstructured", default="plate_holes/r2")
    p.add_argument("--three-d", default="box_cavity/r1")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short training: a check that everything runs, not a measurement")
    p.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    return p.parse_args(argv)


def train_cached(config: dict[str, Any], out: Path, name: str, retrain: bool) -> Path:
    """Train with ``precond train``'s API unless a checkpoint of the same configuration exists."""
    import yaml

    from fe_operators.precond.training import train_preconditioner

    path = out / f"{name}.pt"
    cfg_path = out / f"{name}.yaml"
    text = yaml.safe_dump({**config, "out": path.name}, sort_keys=True)
    if not retrain and path.exists() and cfg_path.exists() and cfg_path.read_text() == text:
        print(f"{name}: cached {path}")
        return path
    cfg_path.write_text(text)
    t0 = time.perf_counter()
    result = train_preconditioner({**config, "out": str(path)}, log=lambda line: print(f"  {name}: {line}"))
    print(f"{name}: trained in {time.perf_counter() - t0:.0f} s; held-out report {result.report}")
    return path


def hypre_line() -> str:
    from petsc4py import PETSc

    if PETSc.Sys.hasExternalPackage("hypre"):
        return "CG + hypre BoomerAMG: available (add it with --hypre)"
    return ("CG + hypre BoomerAMG: unavailable — this PETSc was built without hypre (Debian's hypre 2.26 does "
            "not compile against PETSc 3.26); GAMG is the algebraic multigrid baseline")


def out_of_family(mesh_spec: str, kind: str, models: dict[str, str], rtol: float) -> list[tuple]:
    """One solve per method of an operator outside the training family; (method, its, fallbacks, ok, res)."""
    import firedrake as fd
    import ufl

    from fe_operators.io import load_mesh
    from fe_operators.precond.evaluate import fallback_count, solver_parameters, true_residual

    mesh = load_mesh(mesh_spec)
    V = fd.FunctionSpace(mesh, "CG", 1)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    x = fd.SpatialCoordinate(mesh)
    if kind == "checkerboard":
        k = fd.Function(fd.FunctionSpace(mesh, "DG", 0)).interpolate(
            ufl.conditional(ufl.sin(4 * ufl.pi * x[0]) * ufl.sin(4 * ufl.pi * x[1]) > 0, 1e4, 1.0))
        a = k * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
    elif kind == "anisotropic":
        K = ufl.as_matrix(((1.0, 0.0), (0.0, 100.0)))
        a = ufl.inner(ufl.dot(K, ufl.grad(u)), ufl.grad(v)) * ufl.dx
    else:
        raise ValueError(kind)
    L = v * ufl.dx
    bcs = [fd.DirichletBC(V, 0.0, "on_boundary")]
    rows = []
    for method in [*models, "gamg"]:
        params = solver_parameters(method, models.get(method), rtol=rtol)
        w = fd.Function(V)
        solver = fd.LinearVariationalSolver(fd.LinearVariationalProblem(a, L, w, bcs=bcs), solver_parameters=params,
                                            options_prefix=f"bench_pc_{kind}_{method}_")
        try:
            solver.solve()
        except fd.ConvergenceError:
            pass
        ksp = solver.snes.ksp
        res = true_residual(ksp)
        ok = ksp.getConvergedReason() > 0 and res <= 1.01 * rtol
        rows.append((method, ksp.getIterationNumber(), fallback_count(ksp.getPC()), ok, res))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from fe_operators.precond.evaluate import evaluate_preconditioners, format_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(machine_summary())
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(hypre_line())
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    mg_cfg, dcdm_cfg = dict(NEURAL_MG_CONFIG), dict(DCDM_CONFIG)
    if args.quick:
        sizes = ["unitsquare:8/r2", "unitsquare:8/r3"]
        mg_cfg = {**mg_cfg, "train": {**mg_cfg["train"], "steps": 20}}
        # 20 steps of DCDM do not beat CG + ICC(0) (30.5 against 22.5 held-out iterations), which
        # `precond train` refuses; --quick checks that everything runs, so it keeps the network
        dcdm_cfg = {**dcdm_cfg, "family": {**dcdm_cfg["family"], "mesh": "unitsquare:8/r2", "samples": 2},
                    "train": {**dcdm_cfg["train"], "steps": 20, "allow_worse": True}}
        args.samples, args.repeats = 1, 1
        args.unstructured, args.three_d = "plate_holes/r1", "box_cavity/r1"

    print("\n## 1. training")
    mg_model = str(train_cached(mg_cfg, out, "neural_mg" + ("_quick" if args.quick else ""), args.retrain))
    dcdm_model = str(train_cached(dcdm_cfg, out, "dcdm" + ("_quick" if args.quick else ""), args.retrain))
    models = {"neural_mg": mg_model, "neural_mg_rediscretised": mg_model, "dcdm": dcdm_model}
    kw = dict(samples=args.samples, repeats=args.repeats, seed=1000, rtol=1e-8)

    select = sizes[1] if len(sizes) > 1 else sizes[0]
    print(f"\n## 2. options of the classical multigrids, on {select} (the fastest of each is used everywhere)")
    best: dict[str, dict[str, Any]] = {}
    for method, variants in VARIANTS.items():
        timings = {}
        for name, opts in variants.items():
            rows, _ = evaluate_preconditioners(select, [method], options={method: opts}, **kw)
            r = rows[0]
            timings[name] = r.setup_seconds + r.solve_seconds if r.converged else float("inf")
            print(f"{method} [{name}]: {r.iterations:.1f} its, set-up {r.setup_seconds:.3f} s, solve "
                  f"{r.solve_seconds:.3f} s, total {timings[name]:.3f} s, converged {r.converged}")
        name = min(timings, key=timings.get)
        best[method] = variants[name]
        print(f"{method}: best options [{name}] {variants[name]}")

    print("\n## 3. sizes (unit square hierarchies, log-normal coefficients never seen in training)")
    print(format_rows([]))
    by_size: dict[str, dict[str, Any]] = {}
    for spec in sizes:
        methods = ["neural_mg", "neural_mg_rediscretised", "galerkin_jacobi", "gamg", "gmg", "icc"]
        rows, info = evaluate_preconditioners(spec, methods, models=models, options=best,
                                              log=print, **kw)
        table = {r.method: r for r in rows}
        if info["dofs"] <= args.dcdm_max_dofs:
            drows, _ = evaluate_preconditioners(spec, ["dcdm"], models=models, log=print,
                                                **{**kw, "repeats": 1})
            table["dcdm"] = drows[0]
        by_size[spec] = table
        c = info["contrasts"]
        print(f"-- {spec}: {info['dofs']} DOFs, contrast max/min {min(c):.3g}-{max(c):.3g}")

    print(f"\n## 4. other hierarchies: {args.unstructured} (unstructured), {args.three_d} (3D)")
    print(format_rows([]))
    other = {}
    for label, spec in (("unstructured", args.unstructured), ("3d", args.three_d)):
        rows, info = evaluate_preconditioners(spec, ["neural_mg", "gamg"], models=models,
                                              options=best, log=print, **kw)
        other[label] = {r.method: r for r in rows}
        print(f"-- {spec}: {info['dofs']} DOFs")

    print(f"\n## 5. coefficients outside the training family, on {sizes[0]}")
    print(f"{'operator':<13} {'method':<10} {'its':>6} {'fallbacks':>9} {'converged':>9} {'true res':>9}")
    for kind in ("checkerboard", "anisotropic"):
        for method, its, fb, ok, res in out_of_family(sizes[0], kind, models, 1e-8):
            print(f"{kind:<13} {method:<10} {its:>6} {'-' if fb is None else fb:>9} {'yes' if ok else 'NO':>9} "
                  f"{res:>9.1e}")

    print("\n## ratios")
    small, large = by_size[sizes[0]], by_size[sizes[-1]]
    pc = large["neural_mg"]
    classical = {m: large[m] for m in CLASSICAL if large[m].converged}
    fastest = min(classical, key=lambda m: classical[m].setup_seconds + classical[m].solve_seconds)
    f = classical[fastest]
    print(f"fastest classical at {sizes[-1]}: {fastest} ({f.setup_seconds + f.solve_seconds:.3f} s); "
          f"NeuralMG {pc.setup_seconds + pc.solve_seconds:.3f} s")
    tag = "1M" if pc.dofs > 1_000_000 else f"{pc.dofs}"
    print(f"ratio pc_vs_best_classical_time_{tag} "
          f"{(pc.setup_seconds + pc.solve_seconds) / (f.setup_seconds + f.solve_seconds):.3f}   (target <= 1.0)")
    print(f"ratio pc_its_growth {pc.iterations / small['neural_mg'].iterations:.3f}   (target <= 1.2)")
    print(f"ratio pc_its_{tag} {pc.iterations:.3f}   (target <= 10)")
    redisc = large["neural_mg_rediscretised"]
    print(f"ratio pc_its_growth_rediscretised "
          f"{redisc.iterations / small['neural_mg_rediscretised'].iterations:.3f}   (target <= 1.2)")
    print(f"ratio pc_rediscretised_vs_galerkin_setup_{tag} {redisc.setup_seconds / pc.setup_seconds:.3f}   (report)")
    dcdm_sizes = [s for s in sizes if "dcdm" in by_size[s]]
    if dcdm_sizes:
        t = by_size[dcdm_sizes[-1]]
        print(f"ratio dcdm_its_vs_icc_{t['dcdm'].dofs} {t['dcdm'].iterations / t['icc'].iterations:.3f}   (report)")
    for label in ("unstructured", "3d"):
        o = other[label]
        print(f"ratio pc_its_vs_gamg_{label} {o['neural_mg'].iterations / o['gamg'].iterations:.3f}   "
              f"(target <= 1.0)")
    ok = all(r.converged for t in by_size.values() for r in t.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
