"""``make bench-pc``: learned preconditioners against classical ones in PETSc CG solves.

Variable-coefficient diffusion :math:`-\\nabla\\cdot(k\\nabla u) = 1`, :math:`u = 0`, CG1,
rtol 1e-8 on the true residual from a zero initial guess, coefficients from the
training family (log-normal Matérn field, variance 2: contrast 1e2-1e4) with a seed
never used in training. Every method solves the same matrices in the same run, through
:func:`fe_operators.precond.evaluate.evaluate_preconditioners` (set-up = PETSc's
``PCSetUp`` event, solve = ``KSPSolve``, assembly excluded; one warm-up coefficient,
then ``--samples`` new coefficients, each solved ``--repeats`` times, fastest kept; the
true residual is recomputed after every solve and printed). "Per new coefficient":
every set-up (coarse operators, smoother weights, factorisations) is a full one.

Sections (``--section NAME[,NAME...]`` runs some alone; the checkpoints they need are
trained or read from ``--out`` on first use):

1. **train** — NeuralMG smoothers (``precond train``, kind ``neural_mg``: the diffusion
   family on ``unitsquare:8/r3``; elasticity, Poisson ratio in 0.2-0.35, on
   ``plate_holes/r1``; CG2 Darcy on ``unitsquare:8/r2``) and the DCDM network (kind
   ``dcdm``, :data:`DCDM_CONFIG`); cached in ``--out`` by configuration
   (:func:`train_cached`), so a rerun skips them.
2. **options** — option sets of GAMG and of Firedrake's GMG (:data:`VARIANTS`) on the
   second size; the fastest of each is its "best options" for the rest of the run.  NeuralMG
   gets the same treatment for its one cycle option, the smoothing sweeps
   (:data:`NEURAL_MG_SWEEPS`, each a network trained for that cycle): the fastest is the
   NeuralMG of every later section on the scalar family (sweeps 2 where this section does
   not run).
3. **sizes** — ``unitsquare:16/r4``, ``/r5``, ``/r6`` (66,049, 263,169 and 1,050,625
   DOFs): NeuralMG, NeuralMG with rediscretised coarse operators, the same Galerkin
   V-cycle with ℓ1-Jacobi weights, CG+GAMG, CG+GMG, CG+ICC(0); FCG+DCDM (the same
   coefficients) on the sizes up to ``--dcdm-max-dofs``, skipped with the reason printed
   where its solves, projected from the smallest size, exceed ``--dcdm-budget``.
4. **large** — ``unitsquare:16/r7`` (4,198,401 DOFs; ``--samples-large`` coefficients,
   one solve each): NeuralMG (both coarse operators), GAMG, GMG; no ICC (about 1,500
   iterations there: minutes, and never the fastest). The log-normal coefficients are
   sampled on ``/r5`` and prolonged (:class:`bench_pc_fields.CoarseLogNormal`: the
   sampler's sparse Cholesky factorisation would cost minutes at 4.2M).
5. **meshes** — the unstructured ``plate_holes/r2`` and the 3D ``box_cavity/r1``:
   NeuralMG (trained on the unit square) against GAMG.
6. **out_of_family** — on the smallest size: a 1:10^4 checkerboard and an anisotropic
   tensor diag(1, 100): every learned PC's iterations, fallbacks and convergence, GAMG
   beside them; DCDM's iterations are capped so that its solve stays within
   ``--dcdm-budget`` (a capped solve is printed as not converged).
7. **elasticity** — plane-strain elasticity (Young's modulus a log-normal field, ν = 0.3)
   on ``plate_holes/r4`` (vector CG1, ~404k DOFs): NeuralMG trained on elasticity
   against GAMG with the rigid-body near-nullspace, GAMG's options searched on
   ``plate_holes/r3``.
8. **cg2** — CG2 Darcy (log-normal coefficient) on ``unitsquare:24/r4`` (591,361 DOFs):
   NeuralMG trained on CG2 against GAMG, its options searched on ``unitsquare:24/r3``.
9. **mpi** — NeuralMG at ``unitsquare:16/r6`` under ``mpiexec -n 2`` against ``-n 1``
   (``benchmarks/bench_pc_mpi.py``, the same evaluation, slowest rank's times; the
   coefficients are :class:`bench_pc_fields.FourierLogField`'s, which sample in parallel).

Printed: the machine and its load (start and end), every table, the time of each
section, a ``targets:`` line and ``ratio`` lines (each with its target and met/MISSED):
``pc_vs_best_classical_time_1M`` and ``_4M`` (NeuralMG set-up + solve over the fastest
classical method's; target <= 0.7), ``pc_its_growth`` (NeuralMG iterations at the
largest size over the smallest; <= 1.2; ``pc_its_growth_rediscretised`` the same with
rediscretised coarse operators), ``pc_rediscretised_vs_galerkin_setup_1M`` (report),
``pc_its_1M`` (<= 10), ``dcdm_vs_icc_time_1M`` (FCG+DCDM over CG+ICC; <= 0.5),
``dcdm_vs_neural_mg_time_1M`` (report), ``dcdm_its_growth`` (DCDM iterations at the
largest size it ran over the smallest; <= 1.5), ``dcdm_its_vs_icc_<size>`` (report),
``pc_its_vs_gamg_unstructured`` and ``pc_its_vs_gamg_3d`` (<= 1), ``pc_vs_gamg_time_elasticity``
and ``pc_vs_gamg_time_cg2`` (set-up + solve; <= 1), ``pc_mpi2_speedup_1M`` (report).
A ratio whose solves did not run is printed as ``# ratio NAME not measured: why``.

Run: ``make bench-pc`` (planned at most 30 minutes on 2 cores, checkpoints cached;
``--quick`` for a few-minute check of every section at tiny sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import check_load, machine_summary  # noqa: E402

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

#: NeuralMG's smoothing sweeps searched in the options section (a network trained for each; the
#: name of its configuration: ``neural_mg`` for 2, ``neural_mg_1sweep`` for 1)
NEURAL_MG_SWEEPS: tuple[int, ...] = (2, 1)

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
#: NeuralMG trained on the shipped elasticity family (vector CG1, Poisson ratio drawn in 0.2-0.35)
ELASTICITY_CONFIG: dict[str, Any] = {
    "kind": "neural_mg",
    "family": {"mesh": "plate_holes/r1", "problem": "elasticity", "ranges": {"poisson_ratio": [0.2, 0.35]},
               "samples": 8},
    "smoother": {"hidden": 8, "layers": 1, "sweeps": 2},
    "train": {"steps": 300, "lr": 3e-3, "seed": 0},
}
#: the Darcy family in CG2 (log-normal coefficient, variance 2): the problem evaluated and trained on
CG2_PARAMS: dict[str, Any] = {"degree": 2, "coefficient": "lognormal", "variance": 2.0}
CG2_CONFIG: dict[str, Any] = {
    "kind": "neural_mg",
    "family": {"mesh": "unitsquare:8/r2", "problem": "darcy", "params": CG2_PARAMS, "samples": 8},
    "smoother": {"hidden": 8, "layers": 1, "sweeps": 2},
    "train": {"steps": 300, "lr": 3e-3, "seed": 0},
}
#: evaluated elasticity operators: ν fixed inside the training range (E is drawn per coefficient)
ELASTICITY_PARAMS: dict[str, Any] = {"poisson_ratio": 0.3}

SIZES = ("unitsquare:16/r4", "unitsquare:16/r5", "unitsquare:16/r6")
LARGE = "unitsquare:16/r7"
CLASSICAL = ("gamg", "gmg", "icc")
DCDM_RATIOS = "dcdm_vs_icc_time_1M, dcdm_vs_neural_mg_time_1M, dcdm_its_growth"  # what a skipped DCDM size misses
SECTIONS = ("train", "options", "sizes", "large", "meshes", "out_of_family", "elasticity", "cg2", "mpi")

#: ratio (less its size tag, :func:`_tag`) -> upper target; None: reported only
TARGETS: dict[str, float | None] = {
    "pc_vs_best_classical_time": 0.7, "pc_its_growth": 1.2, "pc_its_growth_rediscretised": 1.2,
    "pc_rediscretised_vs_galerkin_setup": None, "pc_its": 10.0,
    "dcdm_vs_icc_time": 0.5, "dcdm_vs_neural_mg_time": None, "dcdm_its_growth": 1.5, "dcdm_its_vs_icc": None,
    "pc_its_vs_gamg_unstructured": 1.0, "pc_its_vs_gamg_3d": 1.0,
    "pc_vs_gamg_time_elasticity": 1.0, "pc_vs_gamg_time_cg2": 1.0, "pc_mpi2_speedup": None,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/bench/pc", help="checkpoints and configurations (default out/bench/pc)")
    p.add_argument("--section", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated hierarchy specs, smallest first")
    p.add_argument("--large", default=LARGE, help=f"the largest size, run with few solves (default {LARGE})")
    p.add_argument("--options-mesh", default=None,
                   help="where the classical multigrids' options are chosen (default the second of --sizes)")
    p.add_argument("--samples", type=int, default=2, help="measured coefficients per size (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="solves per coefficient, fastest kept (default 2)")
    p.add_argument("--samples-large", type=int, default=1,
                   help="measured coefficients at --large, one solve each (default 1)")
    p.add_argument("--large-sample-dofs", type=int, default=300_000,
                   help="at --large, sample the coefficients on the finest level with at most this many vertices "
                        "and prolong them (default 300000: unitsquare:16/r5, h = 1/512)")
    p.add_argument("--dcdm-max-dofs", type=int, default=1_100_000,
                   help="run DCDM on sizes up to this many DOFs (default 1100000: up to unitsquare:16/r6)")
    p.add_argument("--dcdm-budget", type=float, default=120.0,
                   help="seconds DCDM may take per size past the smallest (its solves projected from the smallest "
                        "size; a size over budget is skipped, printed) and per out-of-family solve (an iteration "
                        "cap from its time per iteration at the smallest size); default 120")
    p.add_argument("--unstructured", default="plate_holes/r2")
    p.add_argument("--three-d", default="box_cavity/r1")
    p.add_argument("--elasticity-mesh", default="plate_holes/r4",
                   help="elasticity evaluation mesh, vector CG1 (default plate_holes/r4, ~404k DOFs)")
    p.add_argument("--cg2-mesh", default="unitsquare:24/r4",
                   help="CG2 Darcy evaluation mesh (default unitsquare:24/r4, 591,361 DOFs)")
    p.add_argument("--mpi-mesh", default="unitsquare:16/r6", help="the mpiexec -n 2 comparison's mesh")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short training: a check that everything runs, not a measurement")
    p.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.section.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        p.error(f"--section: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    return args


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


def out_of_family(mesh_spec: str, kind: str, models: dict[str, str], rtol: float,
                  max_its: dict[str, int] | None = None) -> list[tuple]:
    """One solve per method of an operator outside the training family; (method, its, fallbacks, ok, res).

    ``max_its``: method -> iteration cap (default 10000)."""
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
        params = solver_parameters(method, models.get(method), rtol=rtol,
                                   max_it=(max_its or {}).get(method, 10000))
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


def _parent(spec: str) -> str:
    """The hierarchy spec one refinement coarser: ``plate_holes/r4`` -> ``plate_holes/r3``."""
    base, _, k = spec.rpartition("/r")
    if not base or not k.isdigit() or int(k) < 1:
        raise SystemExit(f"expected a refined mesh spec NAME/rK with K >= 1, got {spec!r}")
    return f"{base}/r{int(k) - 1}"


def _unit_square_dofs(spec: str) -> int | None:
    """CG1 DOFs of ``unitsquare:N/rK`` (``(N 2^K + 1)^2``) without building it; None for another spec."""
    m = re.fullmatch(r"unitsquare:(\d+)/r(\d+)", spec.strip())
    return None if m is None else (int(m[1]) * 2 ** int(m[2]) + 1) ** 2


def _json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects that start lines of ``text`` (anything around them on the line, such as a terminal
    colour reset another rank's logger wrote, is ignored)."""
    found = []
    for line in text.splitlines():
        if "{" in line:
            try:
                found.append(json.JSONDecoder().raw_decode(line, line.index("{"))[0])
            except ValueError:
                continue
    return found


def _tag(dofs: int) -> str:
    """The size in a ratio's name: ``1M`` (1.05M DOFs), ``4M`` (4.2M), else the DOF count."""
    return "4M" if dofs > 4_000_000 else "1M" if dofs > 1_000_000 else str(dofs)


def _total(row: Any) -> float:
    return row.setup_seconds + row.solve_seconds


class Bench:
    """The run's state: settings, checkpoints trained on first use, tables, ratios, failures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.suffix = "_quick" if args.quick else ""
        self.configs = {"neural_mg": NEURAL_MG_CONFIG, "dcdm": DCDM_CONFIG, "elasticity": ELASTICITY_CONFIG,
                        "cg2": CG2_CONFIG}
        self.add_sweeps_configs()
        self.neural_mg = "neural_mg"  # the configuration of the scalar family's NeuralMG (options section)
        self.kw = dict(samples=args.samples, repeats=args.repeats, seed=1000, rtol=1e-8)
        self.best: dict[str, dict[str, Any]] = {}
        self.by_size: dict[str, dict[str, Any]] = {}
        self.large: dict[str, Any] = {}
        self.other: dict[str, dict[str, Any]] = {}
        self.ratios: dict[str, float] = {}
        self.missing: dict[str, str] = {}
        self.failures: list[str] = []
        self.dcdm_seconds_per_it: float | None = None
        self._models: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    def add_sweeps_configs(self) -> None:
        """A configuration per :data:`NEURAL_MG_SWEEPS` count other than ``neural_mg``'s own."""
        base = self.configs["neural_mg"]
        for sweeps in NEURAL_MG_SWEEPS:
            name = self.sweeps_config(sweeps)
            if name not in self.configs:
                self.configs[name] = {**base, "smoother": {**base["smoother"], "sweeps": sweeps}}

    def sweeps_config(self, sweeps: int) -> str:
        """The configuration name of the NeuralMG trained for ``sweeps`` (``neural_mg`` for its own count)."""
        if sweeps == self.configs["neural_mg"]["smoother"]["sweeps"]:
            return "neural_mg"
        return f"neural_mg_{sweeps}sweep" + ("s" if sweeps > 1 else "")

    def model(self, name: str) -> str:
        """The checkpoint of a configuration of :attr:`configs`, trained (or read from the cache) on first use."""
        if name not in self._models:
            self._models[name] = str(train_cached(self.configs[name], self.out, name + self.suffix, self.args.retrain))
        return self._models[name]

    def evaluate(self, spec: str, methods: list[str], label: str, **kw: Any) -> tuple[dict[str, Any], dict]:
        """:func:`evaluate_preconditioners` with the run's settings and best options; failures recorded."""
        from fe_operators.precond.evaluate import evaluate_preconditioners

        smoother, best = kw.pop("smoother", None), kw.pop("best", self.best)
        models = {}
        for m in methods:
            if m in ("neural_mg", "neural_mg_rediscretised", "neural_amg"):
                models[m] = smoother or self.model(self.neural_mg)
            elif m == "dcdm":
                models[m] = self.model("dcdm")
        rows, info = evaluate_preconditioners(spec, methods, models=models, options=best, log=print,
                                              **{**self.kw, **kw})
        for r in rows:
            if not r.converged:
                self.failures.append(f"{label} {r.method} (true res {r.residual:.1e})")
        return {r.method: r for r in rows}, info

    def search_options(self, spec: str, methods: tuple[str, ...], **kw: Any) -> dict[str, dict[str, Any]]:
        """The fastest of :data:`VARIANTS` per method on ``spec`` (set-up + solve)."""
        from fe_operators.precond.evaluate import evaluate_preconditioners

        best = {}
        for method in methods:
            timings = {}
            for name, opts in VARIANTS[method].items():
                rows, _ = evaluate_preconditioners(spec, [method], options={method: opts}, **{**self.kw, **kw})
                r = rows[0]
                timings[name] = _total(r) if r.converged else float("inf")
                print(f"{method} [{name}]: {r.iterations:.1f} its, set-up {r.setup_seconds:.3f} s, solve "
                      f"{r.solve_seconds:.3f} s, total {timings[name]:.3f} s, converged {r.converged}")
            name = min(timings, key=timings.get)
            best[method] = VARIANTS[method][name]
            print(f"{method}: best options [{name}] {best[method]}")
        return best

    def ratio(self, name: str, value: float) -> None:
        self.ratios[name] = value

    # ------------------------------------------------------------------ sections
    def train(self) -> None:
        for name in self.configs:
            self.model(name)

    def options(self) -> None:
        sizes = self.args.size_list
        select = self.args.options_mesh or (sizes[1] if len(sizes) > 1 else sizes[0])
        print(f"on {select} (the fastest of each is used for the scalar unit-square problems)")
        self.best = self.search_options(select, ("gamg", "gmg"))
        self.neural_mg = self.search_sweeps(select)

    def search_sweeps(self, spec: str) -> str:
        """The configuration of the fastest NeuralMG (set-up + solve) of :data:`NEURAL_MG_SWEEPS` on ``spec``."""
        from fe_operators.precond.evaluate import evaluate_preconditioners

        timings = {}
        for sweeps in NEURAL_MG_SWEEPS:
            name = self.sweeps_config(sweeps)
            rows, _ = evaluate_preconditioners(spec, ["neural_mg"], models={"neural_mg": self.model(name)}, **self.kw)
            r = rows[0]
            timings[name] = _total(r) if r.converged else float("inf")
            print(f"neural_mg [sweeps {sweeps}, {name}]: {r.iterations:.1f} its, set-up {r.setup_seconds:.3f} s, "
                  f"solve {r.solve_seconds:.3f} s, total {timings[name]:.3f} s, converged {r.converged}")
        name = min(timings, key=timings.get)
        print(f"neural_mg: best sweeps [{self.configs[name]['smoother']['sweeps']}] ({name})")
        return name

    def sizes(self) -> None:
        from fe_operators.precond.evaluate import format_rows, format_setup_parts

        args = self.args
        print(format_rows([]))
        for spec in args.size_list:
            methods = ["neural_mg", "neural_mg_rediscretised", "galerkin_jacobi", "gamg", "gmg", "icc"]
            # DCDM solves the same coefficients in the same evaluation (one mesh and sampler set-up per size)
            table, info = self.evaluate(spec, methods + ["dcdm"] * self._dcdm_fits(spec), spec)
            if "dcdm" in table:
                row = table["dcdm"]
                if self.dcdm_seconds_per_it is None:
                    self.dcdm_seconds_per_it = row.solve_seconds / max(row.iterations, 1.0)
                print(f"dcdm: {row.solve_seconds / max(row.iterations, 1.0) * 1e3:.2f} ms per iteration at "
                      f"{row.dofs} DOFs (network + FCG), fallbacks {row.fallbacks}")
            self.by_size[spec] = table
            c = info["contrasts"]
            print(f"-- {spec}: {info['dofs']} DOFs, contrast max/min {min(c):.3g}-{max(c):.3g}")
            for line in format_setup_parts(list(table.values())):
                print("   " + line)
        small, big = self.by_size[args.size_list[0]], self.by_size[args.size_list[-1]]
        pc, tag = big["neural_mg"], _tag(big["neural_mg"].dofs)
        self._vs_classical(big, tag, args.size_list[-1])
        self.ratio(f"pc_its_{tag}", pc.iterations)
        redisc = big["neural_mg_rediscretised"]
        self.ratio(f"pc_rediscretised_vs_galerkin_setup_{tag}", redisc.setup_seconds / pc.setup_seconds)
        self.small_its = {m: small[m].iterations for m in ("neural_mg", "neural_mg_rediscretised")}
        self._its_growth(big, "largest of --sizes")
        dcdm = [s for s in args.size_list if "dcdm" in self.by_size[s]]
        if dcdm:
            t = self.by_size[dcdm[-1]]
            self.ratio(f"dcdm_its_vs_icc_{t['dcdm'].dofs}", t["dcdm"].iterations / t["icc"].iterations)
        if len(dcdm) > 1:
            print(f"dcdm_its_growth: {dcdm[-1]} over {dcdm[0]}")
            self.ratio("dcdm_its_growth", self.by_size[dcdm[-1]]["dcdm"].iterations
                       / self.by_size[dcdm[0]]["dcdm"].iterations)
        if dcdm and dcdm[-1] == args.size_list[-1]:
            self.ratio(f"dcdm_vs_icc_time_{tag}", _total(big["dcdm"]) / _total(big["icc"]))
            self.ratio(f"dcdm_vs_neural_mg_time_{tag}", _total(big["dcdm"]) / _total(pc))

    def _dcdm_fits(self, spec: str) -> bool:
        """Whether DCDM runs on ``spec``: within ``--dcdm-max-dofs`` and, past the smallest size, its
        solves (warm-up and ``samples x repeats``) projected from the smallest size within ``--dcdm-budget``."""
        args = self.args
        first = next((t["dcdm"] for t in self.by_size.values() if "dcdm" in t), None)
        if first is None and self.by_size:
            return False  # not run on a smaller size
        dofs = _unit_square_dofs(spec)
        if dofs is None:
            return first is None  # a size of unknown DOFs: the smallest only
        if dofs > args.dcdm_max_dofs:
            print(f"dcdm: not run on {spec} ({dofs} DOFs > --dcdm-max-dofs {args.dcdm_max_dofs})")
            self.missing.setdefault(DCDM_RATIOS, f"DCDM not run at {dofs} DOFs (--dcdm-max-dofs)")
            return False
        if first is None:
            return True
        # its iterations grown by half, the cost per iteration by the size
        solves = 1 + args.samples * args.repeats
        projected = solves * 1.5 * first.iterations * self.dcdm_seconds_per_it * dofs / first.dofs
        if projected > args.dcdm_budget:
            print(f"dcdm: not run on {spec}: {solves} solves projected at {projected:.0f} s "
                  f"({self.dcdm_seconds_per_it * 1e3:.1f} ms per iteration at {first.dofs} DOFs) > --dcdm-budget "
                  f"{args.dcdm_budget:.0f} s")
            self.missing.setdefault(DCDM_RATIOS, f"DCDM projected {projected:.0f} s at {dofs} DOFs > --dcdm-budget")
            return False
        return True

    def _vs_classical(self, table: dict[str, Any], tag: str, spec: str) -> None:
        pc = table["neural_mg"]
        classical = {m: table[m] for m in CLASSICAL if m in table and table[m].converged}
        if not classical:
            self.missing[f"pc_vs_best_classical_time_{tag}"] = "no classical method converged"
            return
        fastest = min(classical, key=lambda m: _total(classical[m]))
        f = classical[fastest]
        print(f"fastest classical at {spec}: {fastest} ({_total(f):.3f} s); NeuralMG {_total(pc):.3f} s")
        self.ratio(f"pc_vs_best_classical_time_{tag}", _total(pc) / _total(f))

    def _its_growth(self, table: dict[str, Any], where: str) -> None:
        if not hasattr(self, "small_its"):
            self.missing["pc_its_growth"] = "section sizes (the smallest size) not run"
            return
        print(f"pc_its_growth: {where} ({table['neural_mg'].dofs} DOFs) over the smallest size")
        self.ratio("pc_its_growth", table["neural_mg"].iterations / self.small_its["neural_mg"])
        self.ratio("pc_its_growth_rediscretised",
                   table["neural_mg_rediscretised"].iterations / self.small_its["neural_mg_rediscretised"])

    def large_size(self) -> None:
        from fe_operators.precond.evaluate import format_rows, format_setup_parts

        from bench_pc_fields import CoarseLogNormal

        spec = self.args.large
        print("CG + ICC(0) is not run here (about 1,500 iterations: minutes, and never the fastest)")
        print(format_rows([]))
        # the log-normal sampler's factorisation would cost minutes at 4.2M DOFs: the same field is
        # sampled on a coarser level and prolonged (bench_pc_fields.CoarseLogNormal)
        params = {"max_sample_dofs": self.args.large_sample_dofs}
        table, info = self.evaluate(spec, ["neural_mg", "neural_mg_rediscretised", "gamg", "gmg"], spec,
                                    samples=self.args.samples_large, repeats=1, problem=CoarseLogNormal,
                                    params=params)
        self.large = table
        c = info["contrasts"]
        level = CoarseLogNormal.last_sample_level
        print(f"-- {spec}: {info['dofs']} DOFs, contrast max/min {min(c):.3g}-{max(c):.3g}; log-normal coefficients "
              f"sampled on level {level} of the hierarchy (at most {params['max_sample_dofs']} vertices), "
              f"prolonged")
        for line in format_setup_parts(list(table.values())):
            print("   " + line)
        self._vs_classical(table, _tag(info["dofs"]), spec)
        self._its_growth(table, "--large")

    def meshes(self) -> None:
        from fe_operators.precond.evaluate import format_rows

        print(format_rows([]))
        for label, spec in (("unstructured", self.args.unstructured), ("3d", self.args.three_d)):
            table, info = self.evaluate(spec, ["neural_mg", "gamg"], spec)
            print(f"-- {spec}: {info['dofs']} DOFs")
            self.ratio(f"pc_its_vs_gamg_{label}", table["neural_mg"].iterations / table["gamg"].iterations)

    def out_of_family(self) -> None:
        spec = self.args.size_list[0]
        models = {"neural_mg": self.model(self.neural_mg), "neural_mg_rediscretised": self.model(self.neural_mg),
                  "dcdm": self.model("dcdm")}
        cap = 10000
        if self.dcdm_seconds_per_it is not None:
            cap = int(min(10000, max(100, self.args.dcdm_budget / self.dcdm_seconds_per_it)))
        print(f"DCDM's iterations capped at {cap} (--dcdm-budget {self.args.dcdm_budget:.0f} s)")
        print(f"{'operator':<13} {'method':<24} {'its':>6} {'fallbacks':>9} {'converged':>9} {'true res':>9}")
        for kind in ("checkerboard", "anisotropic"):
            for method, its, fb, ok, res in out_of_family(spec, kind, models, 1e-8, {"dcdm": cap}):
                print(f"{kind:<13} {method:<24} {its:>6} {'-' if fb is None else fb:>9} {'yes' if ok else 'NO':>9} "
                      f"{res:>9.1e}")
                if not ok:
                    self.failures.append(f"{kind} {method} ({its} its, true res {res:.1e})")

    def _vs_gamg(self, label: str, spec: str, select: str, smoother: str, problem: str,
                 params: dict[str, Any]) -> None:
        """NeuralMG (``smoother``) against GAMG (options searched on ``select``) on a problem family."""
        from fe_operators.precond.evaluate import format_rows, format_setup_parts

        kw = dict(problem=problem, params=params)
        print(f"GAMG's options on {select}:")
        best = self.search_options(select, ("gamg",), **kw)
        print(format_rows([]))
        table, info = self.evaluate(spec, ["neural_mg", "gamg"], f"{label} {spec}", smoother=smoother, best=best,
                                    **kw)
        print(f"-- {spec}: {info['dofs']} DOFs")
        for line in format_setup_parts(list(table.values())):
            print("   " + line)
        self.ratio(f"pc_vs_gamg_time_{label}", _total(table["neural_mg"]) / _total(table["gamg"]))

    def elasticity(self) -> None:
        a = self.args
        self._vs_gamg("elasticity", a.elasticity_mesh, a.elasticity_select, self.model("elasticity"),
                      "elasticity", ELASTICITY_PARAMS)

    def cg2(self) -> None:
        a = self.args
        self._vs_gamg("cg2", a.cg2_mesh, a.cg2_select, self.model("cg2"), "darcy", CG2_PARAMS)

    def mpi(self) -> None:
        from fe_operators.parallel import mpiexec_command, mpiexec_env

        spec, model = self.args.mpi_mesh, self.model(self.neural_mg)
        cores = len(os.sched_getaffinity(0))
        if cores < 2:
            print(f"warning: this process is pinned to {cores} core (taskset): the 2 ranks share it, so the "
                  "speed-up is not measured; run the bench unpinned or on 2 cores (taskset -c 0,1)")
        script = str(Path(__file__).resolve().parent / "bench_pc_mpi.py")
        root = str(Path(__file__).resolve().parents[1])
        env = dict(mpiexec_env(), PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        rows = {}
        for n in (1, 2):
            cmd = mpiexec_command(n, [sys.executable, script, spec, "neural_mg", model,
                                      str(self.args.samples), str(self.args.repeats)])
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
            found = _json_lines(proc.stdout)
            if not found:
                print(f"mpiexec -n {n}: no result (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
                self.failures.append(f"mpi -n {n}")
                self.missing["pc_mpi2_speedup"] = f"mpiexec -n {n} failed"
                return
            r = found[-1]
            rows[n] = r
            print(f"neural_mg on {n} rank(s): {r['dofs']} DOFs, contrast {r['contrast']:.3g}, "
                  f"{r['iterations']:.1f} its, set-up {r['setup_seconds']:.3f} s, solve {r['solve_seconds']:.3f} s, "
                  f"converged {'yes' if r['converged'] else 'NO'}, true res {r['residual']:.1e}")
            if not r["converged"]:
                self.failures.append(f"mpi -n {n} neural_mg (true res {r['residual']:.1e})")
        t1 = rows[1]["setup_seconds"] + rows[1]["solve_seconds"]
        t2 = rows[2]["setup_seconds"] + rows[2]["solve_seconds"]
        self.ratio(f"pc_mpi2_speedup_{_tag(rows[1]['dofs'])}", t1 / t2)

    # ------------------------------------------------------------------ report
    def report(self) -> None:
        print("\n## ratios")
        met, missed = [], []
        lines = []
        for name, value in self.ratios.items():
            target = TARGETS.get(re.sub(r"_(\d+|1M|4M)$", "", name))
            if target is None:
                lines.append(f"ratio {name} {value:.3f}   (report)")
                continue
            ok = value <= target
            (met if ok else missed).append(name)
            lines.append(f"ratio {name} {value:.3f}   (target <= {target:g}, {'met' if ok else 'MISSED'})")
        print("targets: " + ", ".join(f"{k} <= {v:g}" for k, v in TARGETS.items() if v is not None)
              + f" (_1M: 1,050,625 DOFs, _4M: 4,198,401); met {len(met)} of {len(met) + len(missed)}"
              + (f", missed {', '.join(missed)}" if missed else ""))
        for line in lines:
            print(line)
        for name, why in self.missing.items():
            print(f"# ratio {name} not measured: {why}")
        print("every solve converged to rtol 1e-8 on the recomputed true residual" if not self.failures else
              f"NOT converged ({len(self.failures)}): {'; '.join(self.failures)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.size_list = [s.strip() for s in args.sizes.split(",") if s.strip()]
    # the option searches of elasticity and CG2 run on their meshes' parent level
    args.elasticity_select, args.cg2_select = _parent(args.elasticity_mesh), _parent(args.cg2_mesh)
    bench = Bench(args)
    if args.quick:
        args.size_list, args.large = ["unitsquare:8/r2", "unitsquare:8/r3"], "unitsquare:8/r4"
        bench.configs = {
            "neural_mg": {**NEURAL_MG_CONFIG, "train": {**NEURAL_MG_CONFIG["train"], "steps": 20}},
            # 20 steps of DCDM do not beat CG + ICC(0) (30.5 against 22.5 held-out iterations), which
            # `precond train` refuses; --quick checks that everything runs, so it keeps the network
            "dcdm": {**DCDM_CONFIG, "family": {**DCDM_CONFIG["family"], "mesh": "unitsquare:8/r2", "samples": 2},
                     "train": {**DCDM_CONFIG["train"], "steps": 20, "allow_worse": True}},
            "elasticity": {**ELASTICITY_CONFIG, "family": {**ELASTICITY_CONFIG["family"], "samples": 2},
                           "train": {**ELASTICITY_CONFIG["train"], "steps": 20, "allow_worse": True}},
            "cg2": {**CG2_CONFIG, "family": {**CG2_CONFIG["family"], "mesh": "unitsquare:4/r2", "samples": 2},
                    "train": {**CG2_CONFIG["train"], "steps": 20, "allow_worse": True}},
        }
        bench.add_sweeps_configs()
        args.samples, args.repeats, args.samples_large = 1, 1, 1
        args.unstructured, args.three_d = "plate_holes/r1", "box_cavity/r1"
        args.elasticity_mesh, args.elasticity_select = "plate_holes/r2", "plate_holes/r1"
        args.cg2_mesh, args.cg2_select = "unitsquare:8/r2", "unitsquare:8/r1"
        args.mpi_mesh = "unitsquare:8/r3"
        args.large_sample_dofs = 5000  # unitsquare:8/r4 sampled on /r3: the prolongation runs too
        bench.kw.update(samples=1, repeats=1)

    bench.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    print(machine_summary())
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min) on "
          f"{os.cpu_count()} cores")
    print(hypre_line())
    titles = {
        "train": "training (cached in --out by configuration)",
        "options": "options of the classical multigrids",
        "sizes": "sizes (unit square hierarchies, log-normal coefficients never seen in training)",
        "large": f"the largest size, {args.large}",
        "meshes": f"other hierarchies: {args.unstructured} (unstructured), {args.three_d} (3D)",
        "out_of_family": f"coefficients outside the training family, on {args.size_list[0]}",
        "elasticity": f"elasticity on {args.elasticity_mesh}: NeuralMG trained on elasticity against GAMG "
                      "with the rigid-body modes",
        "cg2": f"CG2 Darcy on {args.cg2_mesh}: NeuralMG trained on CG2 against GAMG",
        "mpi": f"NeuralMG under mpiexec -n 2 against -n 1, on {args.mpi_mesh}",
    }
    run = {"train": bench.train, "options": bench.options, "sizes": bench.sizes, "large": bench.large_size,
           "meshes": bench.meshes, "out_of_family": bench.out_of_family, "elasticity": bench.elasticity,
           "cg2": bench.cg2, "mpi": bench.mpi}
    for i, name in enumerate(SECTIONS, 1):
        if name not in args.sections:
            continue
        print(f"\n## {i}. {titles[name]}", flush=True)
        check_load(f"section {name}")
        t0 = time.perf_counter()
        run[name]()
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", flush=True)
    if "options" not in args.sections:
        print("\n(section options not run: GAMG and GMG used their default options)")
    bench.report()
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; whole run "
          f"{time.perf_counter() - t_start:.0f} s")
    return 0 if not bench.failures else 1


if __name__ == "__main__":
    sys.exit(main())
