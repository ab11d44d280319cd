"""``make bench-dynamics`` (issue 16): rollout surrogates of cylinder flow, and the hyperelastic beam.

Stages (``--stage``, default ``all``, in this order):

``fe_step``
    The cylinder data (:func:`cylinder_data`, the product's trajectory files), then the
    generator's warm FE time step on the same mesh, assembly included (the median of
    ``--fe-steps`` BDF2 steps from a stored state, the solver's occasional
    refactorisations included in the mean, which is printed too), and the MGN step at
    batch 1 (``ratio dyn_step_vs_fe_step`` takes the FE step again in the ``spon`` stage,
    in turn with the SPON step).
``mgn``
    The pinned MeshGraphNets baseline (:mod:`mgn`) trained for ``--budget`` seconds on the
    training trajectories' first ``train_horizon`` stored steps, rolled out from the first
    stored state of every held-out trajectory over the whole stored horizon
    (:func:`evaluate_rollout`: relative L2 of velocity at steps 1, 50 and the last, its time
    average, and the Strouhal number and lift amplitude of the rollout against the FE's).
``spon``
    The rollout SPON (:func:`stage_spon`: :func:`fe_operators.train.rollout.train_rollout`
    through the package's Trainer, the same data and ``--budget``, a 4-step unrolled loss
    and training noise), rolled out and evaluated like the MGN, then ``dyn_rollout_vs_mgn``,
    ``dyn_strouhal_error``, ``dyn_step_vs_fe_step`` and ``dyn_div_free`` (the Leray
    projection applied to every rolled-out velocity: :func:`divergence_free_rollout`).
``beam``
    A SPON (GNN processor, through :class:`fe_operators.train.Trainer` by
    :func:`common.run_spon`, ``train.loss: scaled_l2``) trained for ``--beam-budget`` seconds on
    the hyperelastic beam family (generated files, cached), batched inference per sample against the Newton
    solve it replaces (the fewest load steps that converge, direct LU, rtol 1e-8:
    :mod:`beam_newton`), the relative L2 of the SPON printed: ``ratio beam_infer_vs_newton``.

The surrogates' step (``--every K``, default :data:`EVERY` = 8): the MGN and the SPON train
on and roll out with every ``K``-th stored state
(:meth:`~fe_operators.data.trajectories.TrajectoryData.every`), a step of ``K dt = 0.02``:
8 steps per shedding period at Re 200, the fastest, 17 at Re 100 (the data keep 63 and
136).  Why: a rollout's one-step errors accumulate over its steps; the horizon is 700
stored steps, 87 surrogate steps with ``K = 8``.  Measured (2026-12-07, one core per run,
420 s per model, held-out time-averaged velocity rel L2 with the projection at every
step; seed = ``--train-seed``):

=========================  ==========  ==========  ===========  =========================
run                        ``K``       SPON        MGN          SPON St error (mean)
=========================  ==========  ==========  ===========  =========================
third full run             1           33.3 %      71.1 %       no shedding
fourth full run, seed 0    4           14.8 %      56.5 %       5.8 % (Re 86.5: 17 %)
replicate, seed 1          4           13.4 %      106 %        nan (Re 86.5 does not shed)
beside it, seed 0          8           11.9 %      47.5 %       0.4 % (all six)
replicate, seed 1          8           10.1 %      58.9 %       2.8 % (Re 86.5: 13 %)
=========================  ==========  ==========  ===========  =========================

``K = 4`` was the first default (the largest power of two with 10 steps per period at
Re 200); ``K = 8`` rolled out better in both seeds, in velocity and in St, so it is the
default now, chosen on these held-out runs.  St at this budget stays marginal: the five
trajectories at Re 121-141 are within 1.4 % in every ``K = 8`` run, Re 86.5, the lowest,
near the onset of shedding and with the fewest training neighbours, is off by 13-35 % in
two runs of three (one an earlier trial of the SPON alone).  The lift is the BDF2
residual with the step ``K dt``
(:meth:`~fe_operators.problems.navier_stokes.NavierStokesCylinder.force_coefficients`
``dt``), for the FE states too (their St from every 8th state within 1e-4 of every
state's).  ``ratio dyn_step_vs_fe_step`` compares a surrogate step with the ``K`` FE steps
it replaces (the same simulated time); one call against one FE step is printed beside it
(0.16: the network alone is about 0.09 of an FE step, see below).
The Leray projection inside the SPON's loss as well (``--spon-project-in-training``,
:func:`~fe_operators.train.rollout.train_rollout` ``projection``; ``K = 1``, 420 s):
1,208 updates (its adjoint in every backward pass), 40.9 % against the 33.3 % of the
projection at rollout time only, so off.

The first plan of a full run (the defaults then: every stored step, 2 cores, torch 2
threads), about 60-65 minutes from timings of the parts; the runs since took 39-44 minutes
on one core (every stored step) and 23-26 (``--every 4`` and ``8``, cached data):

* cylinder data: two trajectory files of the product
  (:func:`fe_operators.data.generation.generate_dataset`, what ``fe-operators generate``
  runs, with time settings; read back with
  :func:`~fe_operators.data.trajectories.read_trajectories`) on
  :func:`fe_operators.meshes.dfg.dfg_mesh` at resolution 0.35 (1,333 triangles, 6,291
  Taylor–Hood DOFs, 2,783 P2 nodes), dt = 1/400 stored every step: 24 training
  trajectories with ``Re`` drawn uniformly in [80, 200] (seed ``--seed``) and 6 held-out
  ones drawn in [85, 195] (seed ``--seed + 1``: inside the training range).  Every
  trajectory independently: the perturbed steady state (Newton with continuation in
  ``Re``), 800 unstored spin-up steps (2 time units: 4.6 shedding periods at Re 80,
  12 at Re 200), 700 stored steps (1.75 time units), of which the first 380 are the
  training horizon (2.2 periods at Re 80) and all 700 the rollout (4 periods at Re 80,
  1.8 beyond the training horizon; St over 3 periods from upward zero crossings at any
  phase); Re 200 has 63 stored steps per period (>= 50).  30 x 1,500 = 45,000 FE steps
  at 30-50 ms: 25-35 minutes on one process, about 15 with the MPI ensemble on
  ``--gen-procs 2`` (the default; ``mpiexec``), once: the files are kept in ``--out``
  and a rerun of any stage reuses them;
* MGN: 420 s of training (``--budget``).  The pinned design costs 26.2 G multiply-adds a
  step on the P2 graph of this mesh (2,783 nodes, 28,344 directed edges; 2.33 M
  parameters), 1.9-3.2 s a step at batch 1 on one loaded core: its rollout of 6 x 700
  steps alone would take 1.5-3 hours on 2 cores.  So the default is the vertex graph
  (``--mgn-graph p1``: 725 nodes, 4,116 edges, 4.3 G a step, 0.44 s at batch 1 on one
  loaded core) with the P2 midpoint velocities interpolated from the vertices, as the
  paper's meshes carry their fields at the vertices; the interpolation error of the FE
  states is printed as the MGN's error floor (``p2`` keeps the exact graph where there
  is time or a GPU).  The rollout of 6 x 700 steps (18 T multiply-adds) takes 10-15
  minutes on 2 cores, the lift evaluation 1-2;
* rollout SPON: 420 s of training, a rollout of a few minutes, the lift evaluation and
  the Leray projections 2-3 minutes;
* beam: 80/10/20 samples on the family's default mesh (32,882 DOFs; 2-5 s a solve: 4-9
  minutes, cached), 300 s of training (``--beam-budget``), the Newton timing 1 minute.

Sum: data 15-16, MGN 19-24, SPON 10-12, beam 10-15 minutes.

Measured at full model sizes on the full mesh in a short stage run (2 training and 1
held-out trajectories of 30 steps from the perturbed steady state, 30 s budgets, one
torch thread, a shared machine): FE step median 37 ms; rollout SPON step at batch 1
33 ms (``dyn_step_vs_fe_step`` about 0.9: the FE step reuses its LU factorisation, a few
GMRES iterations, while the GNN's 4 layers over 2,783 nodes and 28k edges cost as much);
MGN step (vertex graph) 192 ms at batch 1; about 2 s per SPON update (batch 8, 2 steps
unrolled) and 1.4 s per MGN update (batch 2), so 420 s are some 200 and 300 updates; the
vertex-graph floor of those early states 6.5e-2 (printed with every run: the MGN cannot
go below it, so ``dyn_rollout_vs_mgn`` is read next to it); the Leray projection of 31
states 1 s with ``max ‖div u‖/‖∇u‖`` 1.2e-13.

The surrogate step (``dyn_step_vs_fe_step``), measured on the full data (the held-out
trajectory 0, untrained weights of each design, one torch thread, interleaved with the
FE steps in one process, a machine loaded 4-6 on 2 cores): FE step 24-38 ms; the GNN
(width 48, 4 layers) 77-148 ms (ratio 3.2-5), where its time goes to the per-edge work of
28k edges x 48 channels (gathers, the activation and the scatter of every message); on
two torch threads the same step took 0.5-1 s, and numba's OpenMP layer resets the thread
count torch shares with it whenever a mesh context is built, so :func:`step_time` sets one
thread itself.  The hierarchical default: 3.9-6.8 ms (ratio 0.155-0.18), of which about
2 ms are fixed per-step costs (the same step on a 25-node mesh), the rest the fine
level's 2,783 nodes; its weight-only products (the blocks' per-channel matrices, the
coordinate features, the spectral basis) are computed once per rollout
(:meth:`RolloutSPON.inference <fe_operators.models.rollout.RolloutSPON.inference>`).
The traced step's own waste, cut in Dec 2026 (one shared core, both builds traced in one
process and called in turn, 500 rounds, thread time): the finest level's operator
convolution allocated an accumulator per row, its LayerNorm over 16 channels cost half the
product, and each registered op (``torch.library.custom_op``) took 40 µs to dispatch; the
product now sums into its output rows, the LayerNorm is fused into its kernel
(:func:`~fe_operators.models.layers.operator_conv.channel_spmm_norm`) and the ops are plain
``Library`` fragments: median 4.54 -> 3.73 ms, 10th percentile 3.02 -> 2.51 ms (about
-17 %), the same states to 3e-9 (rounding of the fused LayerNorm).
The beam's GNN (``beam`` stage) spent three quarters of its batched inference gathering,
adding and scattering ``(edges, batch, width)`` messages of 216 MB each at batch 10; without
autograd :class:`~fe_operators.models.layers.mesh_conv.MeshConv` now sums them per
cache-sized chunk (:func:`~fe_operators.models.layers.mesh_conv.edge_mean`, bit for bit
the eager layer): 201 -> 57 ms per sample on one shared core (thread time, in turn in one
process), the exact GELU of every message now the largest part; with gradients its backward
pass recomputes each chunk's sums (the same gradients): a training step at batch 8
2.55 -> 1.25 s, so the 300 s budget holds about twice the updates.
The beam's training loss (``--beam-loss``, default ``scaled_l2``, the product's
``train.loss: scaled_l2``, :class:`fe_operators.fem.norms.ScaledLoss`): its output norms
span 233x (loads sampled down to zero), and
under the per-sample relative L2 loss a fresh SPON sat at zero (loss 1) for about 100
updates (run of Dec 2026: val rel L2 near 1 for 10 of 22 epochs, test 0.332).  The squared
FE-L2 error over the training set's mean squared norm does not single out the small
targets: same seed, lr and budget on one shared core, val rel L2 0.21 after 4 epochs and
0.089 after 18, test rel L2 0.145 (219 updates; selection stays on val rel L2).  A loop
of 90 updates at constant lr 3e-3: relative loss val 0.96 / 1.02 / 0.73 at 15 / 60 / 90
updates, the normalised MSE 0.52 / 0.16 / 0.22.
Short training at equal time (90 s, one thread, 12 training trajectories' first 200 steps,
the same loss and noise; errors on held-out Re 141.3 and 86.5): GNN 13 updates, one-step
velocity rel L2 1.66e-2 (persistence: 1.66e-2), at step 50 4.47e-1; hierarchical default
501 updates, 7.4e-3 and 2.09e-1; boundary error 0 for both.  ``--device cuda`` trains and
rolls out both cylinder models on a GPU where there is one (the step timings stay on the
CPU).

``--smoke``: a coarse mesh (resolution 0.2, dt 1/100), 2 training trajectories with Re
drawn in [90, 150] and 1 held out in [110, 130] (2 spin-up and 8 stored steps, generated in
this process), a tiny MGN (latent 16, 2 blocks), rollout SPON (hierarchical width 8, or gnn
width 8 with 2 layers) and beam
(40 x 4 cells, 6/2/2 samples), 4 s of training each: every stage runs and prints every
ratio line in under a minute (tests run it; St is nan there: no shedding period fits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
from fe_operators.petsc_argv import import_firedrake  # noqa: E402

fd = import_firedrake()  # first, without this script's arguments (PETSc would read them)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import check_load, machine_summary, n_params, print_ratios, run_spon  # noqa: E402
from mgn import MGNConfig, MGNSimulator, cylinder_mesh_graph, rollout_mgn, train_mgn  # noqa: E402

from fe_operators.data.trajectories import TrajectoryData  # noqa: E402

STAGES = ("fe_step", "mgn", "spon", "beam")
#: the rollout SPON's options per processor (``--spon-processor``) on the full run; ``--spon-options`` overrides
SPON_OPTIONS = {"gnn": {"width": 48, "depth": 4, "latent_cells": 0},
                "hierarchical": {"width": 32, "min_width": 8, "act": "relu", "spectral_layers": 1}}
#: the surrogates' step in stored steps (of the generator's dt): see the module docstring
EVERY = 8
TARGETS = {"dyn_rollout_vs_mgn": 0.7, "dyn_strouhal_error": 0.02, "dyn_step_vs_fe_step": 0.1,
           "dyn_div_free": 1e-10, "beam_infer_vs_newton": 0.05}


# ---------------------------------------------------------------------------------- cylinder data
def cylinder_mesh(resolution: float, out: Path) -> str:
    """The mesh spec (a file path) of ``dfg_mesh(resolution)``, written once into ``out/meshes``."""
    from fe_operators.meshes.dfg import dfg_mesh

    return str(dfg_mesh(out / "meshes", resolution))


def cylinder_data(mesh: str, path: Path, *, n: int, reynolds_range: Sequence[float], dt: float, n_steps: int,
                  spinup_steps: int, seed: int, procs: int = 1,
                  log: Callable[[str], None] = print) -> tuple[Any, TrajectoryData]:
    """``n`` trajectories of the cylinder family in the product's trajectory file ``path``, and its problem.

    Generated with :func:`fe_operators.data.generation.generate_dataset` (what ``fe-operators
    generate`` runs): trajectory ``i`` has ``Re`` drawn uniformly from ``reynolds_range``
    with ``default_rng([seed, i])``, starts from the perturbed steady state
    (:meth:`~fe_operators.problems.navier_stokes.NavierStokesCylinder.initial_state`, Newton
    with continuation in ``Re``), takes ``spinup_steps`` unstored steps of ``dt`` and stores
    ``n_steps + 1`` states; every trajectory independently.  A complete file with the same
    settings is reused (the generator's own resume); ``procs > 1`` runs the MPI ensemble
    (``mpiexec -n procs``, trajectories spread over the ranks).  Read back with
    :func:`~fe_operators.data.trajectories.read_trajectories` (digests checked) and the
    problem rebuilt from the file's provenance (:meth:`TrajectoryFile.rebuild_problem`).
    """
    from fe_operators.data.trajectories import TrajectoryFile, read_trajectories

    kwargs = {"problem": "navier_stokes", "mesh": mesh, "n_samples": int(n), "out": str(path), "seed": int(seed),
              "params": {"dt": float(dt), "reynolds_range": [float(r) for r in reynolds_range]},
              "time": {"n_steps": int(n_steps), "spinup_steps": int(spinup_steps)}, "progress": False}
    t0 = time.perf_counter()
    if procs > 1 and not (path.exists() and TrajectoryFile(path).complete):
        import shutil
        import subprocess

        code = ("import json, sys; from fe_operators.data.generation import generate_dataset; "
                "generate_dataset(**json.loads(sys.argv[1]))")
        extra = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        mpiexec = shutil.which("mpiexec")
        if mpiexec is None:
            raise SystemExit("bench-dynamics: --gen-procs > 1 needs mpiexec on PATH (or give --gen-procs 1)")
        subprocess.run([mpiexec, *extra, "-n", str(procs), sys.executable, "-c", code, json.dumps(kwargs)],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    else:
        from fe_operators.data.generation import generate_dataset

        generate_dataset(**kwargs)
    file = TrajectoryFile(path)
    problem = file.rebuild_problem()
    data = read_trajectories(path)
    log(f"data: {path}: {data.n_samples} trajectories x {data.n_stored} states x {data.n_dofs} DOFs, Re "
        f"{', '.join(f'{r:.1f}' for r in data.params[:, 0])} ({time.perf_counter() - t0:.0f} s, {procs} "
        f"process{'es' if procs > 1 else ''}; nothing to do when cached)")
    return problem, data


# ---------------------------------------------------------------------------------- evaluation
def lift_series(problem: Any, states: np.ndarray, re: float, dt: float | None = None) -> np.ndarray:
    """``c_L`` at every state from the third on (BDF2 residual, volume-integral method), the
    states ``dt`` apart (default: the solver's step)."""
    funcs = [problem.array_to_state(s) for s in states[:3]]
    out = np.empty(states.shape[0] - 2)
    for j in range(2, states.shape[0]):
        if j > 2:
            funcs = [problem.array_to_state(states[j]), *funcs[:2]]
        else:
            funcs = funcs[::-1]
        out[j - 2] = problem.force_coefficients(funcs, {"Re": re}, dt=dt)[1]
    return out


def strouhal(problem: Any, times: np.ndarray, lift: np.ndarray, re: float, periods: int = 3) -> tuple[float, int]:
    """St from interpolated upward zero crossings over the last ``periods`` periods (fewer if
    the signal has fewer; nan without two crossings), and the periods used."""
    from fe_operators.problems.dfg_benchmark import strouhal_from_lift

    ubar = problem.mean_velocity({"Re": re})
    for p in range(periods, 0, -1):
        try:
            return strouhal_from_lift(times, lift, problem.diameter, ubar, p), p
        except ValueError:
            continue
    return math.nan, 0


def evaluate_rollout(problem: Any, pred: np.ndarray, true: np.ndarray, reynolds: np.ndarray,
                     train_horizon: int, label: str, log: Callable[[str], None] = print,
                     dt: float | None = None) -> dict[str, Any]:
    """Errors of rollouts ``pred`` against the FE trajectories ``true`` (both ``(B, T + 1, n_dofs)``,
    states ``dt`` apart: default the solver's step).

    Relative L2 (FE mass matrix of the velocity space) of the velocity at steps 1, 50 and
    the last, averaged over the trajectories; the time average over steps 1..T (the
    ratio's quantity) and over the training horizon; the Strouhal number and the lift
    amplitude (half the peak-to-peak of ``c_L``) of the rollout and of the FE solution,
    and ``|St_rollout - St_FE| / St_FE``.
    """
    from fe_operators.fem import FENorm

    norm = FENorm.l2(problem.velocity_space)
    n_u = 2 * problem.velocity_space.dof_dset.size
    B, T1 = pred.shape[:2]
    p = torch.from_numpy(np.ascontiguousarray(pred[:, 1:, :n_u])).reshape(-1, n_u // 2, 2)
    t = torch.from_numpy(np.ascontiguousarray(true[:, 1:T1, :n_u])).reshape(-1, n_u // 2, 2)
    rel = norm.relative(p, t).reshape(B, T1 - 1).numpy()
    dt = problem.dt if dt is None else float(dt)
    times = dt * np.arange(2, T1)
    st = np.full((B, 2), math.nan)
    amp = np.full((B, 2), math.nan)
    used = []
    for b in range(B):
        for c, series in enumerate((pred[b], true[b, :T1])):
            lift = lift_series(problem, series, float(reynolds[b]), dt)
            st[b, c], periods = strouhal(problem, times, lift, float(reynolds[b]))
            amp[b, c] = 0.5 * float(lift.max() - lift.min()) if np.isfinite(lift).all() else math.nan
            used.append(periods)
    steps = {1: 0, 50: min(49, T1 - 2), T1 - 1: T1 - 2}
    out = {f"rel_l2_step{s}": float(rel[:, i].mean()) for s, i in steps.items()}
    out.update({
        "rel_l2_time_avg": float(rel.mean()), "rel_l2_time_avg_train_horizon": float(rel[:, :train_horizon].mean()),
        "steps": T1 - 1, "strouhal_rollout": st[:, 0].tolist(), "strouhal_fe": st[:, 1].tolist(),
        "strouhal_rel_error": float(np.nanmean(np.abs(st[:, 0] - st[:, 1]) / st[:, 1]))
        if np.isfinite(st).all() else math.nan,
        "lift_amplitude_rollout": amp[:, 0].tolist(), "lift_amplitude_fe": amp[:, 1].tolist(),
        "min_periods": int(min(used)) if used else 0,
    })
    log(f"{label}: rollout of {B} held-out trajectories over {T1 - 1} steps (training horizon {train_horizon}): "
        f"velocity rel L2 step 1 {out['rel_l2_step1']:.3e}, step {min(50, T1 - 1)} "
        f"{out[f'rel_l2_step{min(50, T1 - 1)}']:.3e}, last {out[f'rel_l2_step{T1 - 1}']:.3e}, time average "
        f"{out['rel_l2_time_avg']:.3e} (training horizon {out['rel_l2_time_avg_train_horizon']:.3e})")
    for b in range(B):
        log(f"  {label} Re {reynolds[b]:6.1f}: St rollout {st[b, 0]:.4f} FE {st[b, 1]:.4f}; lift amplitude "
            f"rollout {amp[b, 0]:.4f} FE {amp[b, 1]:.4f}")
    if out["min_periods"] < 3:
        log(f"  {label}: St from {out['min_periods']} period(s) only somewhere (the bench asks for >= 3)")
    return out


def fe_step_time(problem: Any, data: TrajectoryData, index: int, steps: int) -> dict[str, float]:
    """Warm BDF2 steps of the generator from stored states of trajectory ``index``, assembly included.

    Returns the median and the mean (refactorisations included) seconds of ``steps`` steps
    after two untimed ones.
    """
    params = {"Re": float(data.params[index, 0])}
    states = [problem.array_to_state(data.states[index, 1]), problem.array_to_state(data.states[index, 0])]
    times = []
    for k in range(steps + 2):
        t0 = time.perf_counter()
        new = problem.step(states[0], params, states[1:])
        if k >= 2:
            times.append(time.perf_counter() - t0)
        states = [new, states[0]]
    return {"median": statistics.median(times), "mean": float(np.mean(times))}


def step_time(step: Callable[[], Any], repeats: int, threads: int = 1) -> float:
    """Median seconds of ``step()`` (no autograd) after one warm-up call, on ``threads`` CPU threads.

    The FE step it is compared with runs on one process and one thread, so the surrogate
    gets one too (torch and numba, restored after).  The thread count is set here, just
    before timing, and not trusted from earlier: numba's OpenMP layer resets the count
    torch shares with it whenever a parallel kernel starts (building a mesh context does),
    and torch on two threads of a loaded 2-core machine took 4x-10x longer at batch 1.
    """
    import numba

    before = (torch.get_num_threads(), numba.get_num_threads())
    torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        with torch.no_grad():
            step()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
    return statistics.median(times)


def interleaved_step_times(problem: Any, data: TrajectoryData, index: int, step: Callable[[], Any], *,
                           rounds: int, fe_steps: int, repeats: int) -> dict[str, float]:
    """Rounds of :func:`fe_step_time` (``fe_steps`` steps) and :func:`step_time` (``repeats``) taken in turn.

    The medians over the rounds of both (``"fe_step_s"``, ``"step_s"``): the two sides of
    ``dyn_step_vs_fe_step`` measured under the same load, minutes after the ``fe_step``
    stage on a shared machine.
    """
    fe, sur = [], []
    for _ in range(rounds):
        fe.append(fe_step_time(problem, data, index, fe_steps)["median"])
        sur.append(step_time(step, repeats))
    return {"fe_step_s": statistics.median(fe), "step_s": statistics.median(sur)}


# ---------------------------------------------------------------------------------- the stages
def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Mesh, Reynolds numbers, steps, the MGN design and the rollout SPON of a full or a smoke run."""
    if args.smoke:
        return {"resolution": 0.2, "dt": 1 / 100, "train_range": (90.0, 150.0), "n_train": 2,
                "test_range": (110.0, 130.0), "n_test": 1, "n_steps": 8, "train_horizon": 5, "spinup": 2,
                "mgn": MGNConfig(latent=16, message_passing_steps=2, warmup_batches=2),
                "spon": {"gnn": {"width": 8, "depth": 2, "latent_cells": 0},
                         "hierarchical": {"width": 8, "min_width": 4, "modes": 3, "act": "relu",
                                          "spectral_layers": 1}}, "unroll": 2, "noise": 0.01,
                "pushforward": 0, "pushforward_curriculum": False, "every": 2,
                "beam_mesh": "rectangle:1,0.1:40x4", "beam_counts": (6, 2, 2)}
    from fe_operators.problems.hyperelastic import DEFAULT_MESH

    return {"resolution": args.resolution, "dt": 1 / 400, "train_range": (80.0, 200.0), "n_train": 24,
            "test_range": (85.0, 195.0), "n_test": 6, "n_steps": 700, "train_horizon": 380, "spinup": 800,
            "mgn": MGNConfig(), "spon": SPON_OPTIONS, "unroll": 4, "noise": 0.05,
            "pushforward": 4, "pushforward_curriculum": False, "every": EVERY,
            "beam_mesh": DEFAULT_MESH, "beam_counts": (80, 10, 20)}


def cylinder(args: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """The problem, the graph and the train/test trajectories (two trajectory files, generated once)."""
    t0 = time.perf_counter()
    mesh = cylinder_mesh(s["resolution"], out)
    tag = f"r{s['resolution']:g}-dt{1 / s['dt']:g}-n{s['n_steps']}-spin{s['spinup']}"
    common = {"dt": s["dt"], "n_steps": s["n_steps"], "spinup_steps": s["spinup"], "procs": args.gen_procs}
    _, train = cylinder_data(mesh, out / f"cylinder-train-{tag}-seed{args.seed}.h5", n=s["n_train"],
                             reynolds_range=s["train_range"], seed=args.seed, **common)
    problem, test = cylinder_data(mesh, out / f"cylinder-test-{tag}-seed{args.seed + 1}.h5", n=s["n_test"],
                                  reynolds_range=s["test_range"], seed=args.seed + 1, **common)
    k = s["every"]
    print(f"cylinder: dfg_mesh(r={s['resolution']}), {problem.n_dofs} DOFs, dt {problem.dt:g}, {s['spinup']} "
          f"spin-up steps per trajectory; Re train {train.n_samples} drawn in {list(s['train_range'])}, held out "
          f"{', '.join(f'{r:.1f}' for r in test.params[:, 0])}; {test.n_stored} stored states, training horizon "
          f"{s['train_horizon']}; the surrogates step every {k} stored states (dt {problem.dt * k:g}: "
          f"{(test.n_stored - 1) // k} steps over the horizon, {s['train_horizon'] // k} over the training "
          f"horizon) ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"problem": problem, "graph": cylinder_mesh_graph(problem, args.mgn_graph), "train": train.every(k),
            "test": test.every(k), "test_full": test, "horizon": s["train_horizon"] // k}


def stage_fe_step(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    fe = fe_step_time(cyl["problem"], cyl["test_full"], 0, args.fe_steps)
    torch.manual_seed(args.train_seed)
    model = MGNSimulator(cyl["graph"], 1, s["mgn"], device="cpu")
    model.eval()
    state = torch.as_tensor(cyl["test"].states[:1, 0], dtype=torch.float32)
    re = torch.tensor([[float(cyl["test"].params[0, 0])]])
    mgn_s = step_time(lambda: model.step(state, re), args.repeats)
    results["fe_step"] = {"fe_step_s": fe["median"], "fe_step_mean_s": fe["mean"], "mgn_step_s": mgn_s}
    print(f"FE time step (warm, assembly included, CPU): median {fe['median'] * 1e3:.1f} ms, mean "
          f"{fe['mean'] * 1e3:.1f} ms over {args.fe_steps} steps; MGN step at batch 1: {mgn_s * 1e3:.1f} ms "
          f"(info: mgn_step_vs_fe_step {mgn_s / fe['median']:.2f})", flush=True)


def stage_mgn(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    check_load("MGN training")
    train, test = cyl["train"], cyl["test"]
    torch.manual_seed(args.train_seed)
    model = MGNSimulator(cyl["graph"], 1, s["mgn"], device=args.device)
    c, g = s["mgn"], cyl["graph"]
    print(f"MGN: {'P2 node' if g.velocity_ends is None else 'vertex'} graph {g.n_nodes} nodes, {g.n_edges} "
          f"directed edges; latent "
          f"{c.latent}, {c.message_passing_steps} blocks, {c.hidden_layers}-hidden-layer MLPs, {n_params(model):,} "
          f"parameters; Adam {c.lr:g} -> {c.lr_final:g} over {args.budget:.0f} s, batch {c.batch}, noise std "
          f"{c.noise_std:g}", flush=True)
    if g.velocity_ends is not None:  # a vertex graph: the error of the interpolated midpoints is a floor
        from fe_operators.fem import FENorm

        true = torch.from_numpy(test.states[:, 1:]).reshape(-1, test.n_dofs)
        m = g.n_velocity_nodes
        floor = FENorm.l2(cyl["problem"].velocity_space).relative(
            g.join(*g.split(true))[:, :2 * m].reshape(-1, m, 2), true[:, :2 * m].reshape(-1, m, 2))
        print(f"MGN on the vertex graph: velocity rel L2 of the interpolated FE states (the floor) "
              f"{float(floor.mean()):.3e}", flush=True)
        results["mgn_floor"] = float(floor.mean())
    info = train_mgn(model, train.states, train.params, budget=args.budget, horizon=cyl["horizon"],
                     seed=args.train_seed)
    t0 = time.perf_counter()
    pred = rollout_mgn(model, test.states[:, 0], test.params, test.n_stored - 1)
    info["rollout_s"] = time.perf_counter() - t0
    ev = evaluate_rollout(cyl["problem"], pred, test.states, test.params[:, 0], cyl["horizon"], "MGN", dt=test.dt)
    idx = cyl["graph"].dirichlet_dofs.numpy()
    ev["max_boundary_error"] = float(np.abs(pred[:, :, idx] - test.states[:, :, idx]).max())
    print(f"MGN: max Dirichlet error along the rollouts {ev['max_boundary_error']:.1e}; rollout "
          f"{info['rollout_s']:.1f} s", flush=True)
    results["mgn"] = {**info, **ev}


def print_ratio(name: str, value: float) -> None:
    """``ratio <name> <value>``: three decimals, or three digits in e-notation below 1e-3 (``dyn_div_free``)."""
    print(f"ratio {name} {value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"ratio {name} {value:.3e}",
          flush=True)


def divergence_free_rollout(problem: Any, mask: torch.Tensor, pred: np.ndarray, true: np.ndarray,
                            chunk: int = 64, P: Any = None) -> dict[str, float]:
    """The divergence-free option applied to rolled-out velocities: the Leray projection of each.

    ``P`` is :func:`fe_operators.fem.leray.leray_projection` of the velocity space with the
    state's Dirichlet velocity DOFs (walls, cylinder, inflow): it maps a P2 velocity to the
    divergence-free P2 velocity on the Alfeld-refined mesh (Scott–Vogelius) nearest in
    ``|.|_{H^1}`` with the same Dirichlet values.  Returns the largest
    ``‖div Pu‖_{L²} / ‖∇ Pu‖_{L²}`` over all trajectories and steps of ``pred`` (the
    bench's ``dyn_div_free``), the same of the raw rollout velocities embedded exactly into
    the refined space (what the projection removes), the largest Dirichlet error of ``Pu``
    at the original DOFs (0: copied), and the time-averaged velocity rel L2 of ``Pu``
    against the FE velocity (on the refined space, the FE field embedded exactly).
    """
    n_u = 2 * problem.velocity_space.dof_dset.size
    bc = np.flatnonzero(mask[:n_u].cpu().numpy())
    P = velocity_leray(problem, mask) if P is None else P
    u = torch.from_numpy(np.ascontiguousarray(pred[:, :, :n_u].reshape(-1, n_u)))
    t = torch.from_numpy(np.ascontiguousarray(true[:, :, :n_u].reshape(-1, n_u)))
    ratio, raw, bnd, rel = 0.0, 0.0, 0.0, []
    for k in range(0, u.shape[0], chunk):
        v = P(u[k:k + chunk])
        ratio = max(ratio, float(P.divergence_ratio(v).max()))
        raw = max(raw, float(P.divergence_ratio(P.embed(u[k:k + chunk])).max()))
        bnd = max(bnd, float((P.restrict(v)[:, bc] - u[k:k + chunk, bc]).abs().max()))
        rel.append(P.relative_l2(v, t[k:k + chunk]))
    rel = np.concatenate(rel).reshape(pred.shape[0], pred.shape[1])[:, 1:]
    return {"div_free": ratio, "div_raw": raw, "div_free_boundary_error": bnd,
            "div_free_rel_l2_time_avg": float(rel.mean()), "leray": repr(P)}


def velocity_leray(problem: Any, mask: torch.Tensor) -> Any:
    """The Leray projection of the cylinder state's velocity space, its Dirichlet DOFs those of ``mask``."""
    from fe_operators.fem.leray import leray_projection

    n_u = 2 * problem.velocity_space.dof_dset.size
    return leray_projection(problem.velocity_space, np.flatnonzero(mask[:n_u].cpu().numpy()))


def runs_folder(args: argparse.Namespace) -> Path:
    """Where the stages' training runs go (``--runs``; default ``OUT/runs``)."""
    return Path(args.runs) if args.runs else Path(args.out) / "runs"


def spon_processor(args: argparse.Namespace, s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The rollout SPON's processor (``--spon-processor``) and its options (the run's, ``--spon-options`` on top)."""
    from fe_operators.models.processors.base import processor_options

    try:
        extra = json.loads(args.spon_options or "{}")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"bench-dynamics: --spon-options is not JSON ({exc}); give e.g. '{{\"width\": 16}}'")
    if not isinstance(extra, dict):
        raise SystemExit(f"bench-dynamics: --spon-options must be a JSON object, got {args.spon_options!r}")
    options = {**s["spon"][args.spon_processor], **extra}

    processor_options(args.spon_processor, options, "--spon-options")  # a bad key fails here, before the data
    return args.spon_processor, options


def stage_spon(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    """The rollout SPON against the MGN and the FE solver: the four cylinder ratios.

    Training (the product's path: :func:`fe_operators.train.rollout.train_rollout`, i.e.
    :func:`~fe_operators.models.rollout_build.rollout_spon_for_problem` and the package's
    Trainer): the processor ``--spon-processor`` with the run's options (``SPON_OPTIONS``,
    ``--spon-options`` on top; :func:`spon_processor`): ``hierarchical`` (the default;
    SPON-MG: width 32 on the 175 aggregation nodes of the coarsest level, 16 on the 2,783 P2
    nodes, relu, one spectral layer: 19 M multiply-adds a sample) or ``gnn`` (width 48, 4
    message-passing layers, no latent grid: the default latent FNO stage costs 2.4 s a step
    at batch 1 on the smoke mesh, loaded machine; about 190 M multiply-adds), on the
    training trajectories' first ``train_horizon`` stored steps (the MGN's data), AdamW
    with lr ``--spon-lr``, batch ``--spon-batch``, a cosine decay to 0 over the time budget
    (``scheduler.length: time_budget``, ``--budget`` seconds: the MGN's), a **4-step
    unrolled** relative-L2 loss of the state (gradients through every step) and **training
    noise** of std 0.05 times each channel's std on the free DOFs of the window's first
    state, optionally the **pushforward** trick (``--spon-pushforward M``: up to ``M`` steps
    without gradient before the loss, :class:`~fe_operators.train.rollout.RolloutTrainer`;
    ``--spon-pushforward-curriculum`` grows ``M`` over the budget; default off); no validation
    split (the last weights; the held-out Re are only for the test).  Pushforward measured
    (2026-12-07, ``--budget 150``, one shared core at load about 5, the last weights rolled
    out over the 700 held-out steps): ``--spon-pushforward 4`` 80.0 % time-averaged (204
    updates) against 118 % without (260 updates); one seed each.
    Those two are the remedies of the first full run (2026-12-07: 2 steps and noise 0.01
    gave 0.34 % after one step but diverged past the training horizon, 333 % time-averaged
    against the MGN's 70 %; stage runs on one loaded thread: noise 0.05 121 %, noise 0.05
    with 4 steps 91 %).

    Rollout: from the first stored state of each held-out trajectory over all stored steps
    (the training horizon and beyond), the Dirichlet data of the first state at every step
    (the cylinder's are time-independent: nothing of the reference is read), evaluated
    like the MGN's (:func:`evaluate_rollout`).

    ``dyn_step_vs_fe_step``: a SPON step at batch 1 on the CPU, one thread as the FE step's
    (:func:`step_time`; a step of a rollout, in :meth:`RolloutSPON.inference
    <fe_operators.models.rollout.RolloutSPON.inference>`: the network and the exact
    Dirichlet lifting, float32 weights, float64 states) over the median warm FE step, both
    taken in turn in 3 rounds (:func:`interleaved_step_times`: the same load on both sides;
    the ``fe_step`` stage's median, measured up to an hour earlier, is printed next to it).

    ``dyn_div_free``: the rollout SPON has no divergence-free decoder of its own; the
    divergence-free option is the Leray projection (:mod:`fe_operators.fem.leray`) applied
    to **each rolled-out velocity** of every held-out trajectory (:func:`divergence_free_rollout`).
    Measured: the largest ``‖div Pu‖_{L²} / ‖∇ Pu‖_{L²}`` on the Alfeld-refined mesh (the
    space ``Pu`` lives on) over all trajectories and steps; the Dirichlet values of ``Pu``
    at the original DOFs are checked equal to the rollout's (printed), and the rel L2 of
    ``Pu`` against the FE velocity printed next to the rollout's.  With ``--spon-leray-loop``
    (default) the projection is part of the rollout: each new velocity is projected and
    interpolated back (:func:`fe_operators.fem.leray.leray_state_projection`) before the next
    step is taken from it (``RolloutSPON.rollout(project=...)``), and every SPON ratio is of
    that rollout, its step included (the network's step and the projection; the step alone
    printed as info); the same weights rolled out without it are printed beside it.  Measured
    (2026-12-07, ``--stage spon --spon-pushforward 4``, 1,453 updates): time-averaged velocity
    rel L2 34.3 % with the projection at every step against 112 % for the same weights without
    it (the MGN of an earlier full run: 74.1 %); the step 17.9 ms with the projection (its
    sparse solve at batch 1 about 14 ms) against 3.67 ms without.  The projection is now
    solved on stream functions and evaluated at the P2 nodes only
    (:meth:`~fe_operators.fem.leray.LerayProjection.at_nodes`): 0.64 ms a step.
    """
    from fe_operators.fem.leray import leray_state_projection
    from fe_operators.train import SchedulerSection, TrainSection
    from fe_operators.train.rollout import train_rollout

    check_load("SPON training")
    problem, train, test = cyl["problem"], cyl["train"], cyl["test"]
    h = cyl["horizon"]
    train_h = dataclasses.replace(train, states=train.states[:, :h + 1])
    settings = TrainSection(
        epochs=10**9, batch_size=args.spon_batch, lr=args.spon_lr, weight_decay=args.weight_decay,
        scheduler=SchedulerSection(name="cosine", length="time_budget", min_lr=0.0), seed=args.train_seed,
        device=args.device, time_budget=args.budget, progress=False, restore_best=False)
    run_dir = runs_folder(args) / "rollout-spon"
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark trains anew
    torch.manual_seed(args.train_seed)
    t0 = time.perf_counter()
    processor, options = spon_processor(args, s)
    model, result = train_rollout(problem, train_h, None, run_dir, processor=processor, options=options,
                                  unroll=s["unroll"], noise_std=s["noise"], pushforward=s["pushforward"],
                                  pushforward_curriculum=s["pushforward_curriculum"], settings=settings,
                                  diagnostic=problem.diagnostic_fields if args.spon_diagnostic_pressure else (),
                                  read_diagnostic=args.spon_read_diagnostic,
                                  projection=(lambda m: leray_state_projection(velocity_leray(problem, m.layout.mask)))
                                  if args.spon_project_in_training else None)
    train_s = time.perf_counter() - t0
    cost = getattr(model.spon.processor, "cost_report", None)
    if cost is not None:
        print(cost(model.spon.context), flush=True)
    print(f"SPON: rollout SPON, {processor} processor {options}, {n_params(model):,} parameters; AdamW {args.spon_lr:g} "
          f"cosine to 0 over {args.budget:.0f} s (time budget), batch {args.spon_batch}, {s['unroll']}-step "
          f"unrolled relative L2 loss, noise std {s['noise']:g} x channel std, pushforward "
          f"{s['pushforward']}{' (curriculum)' if s['pushforward_curriculum'] else ''}; {result.step} updates in "
          f"{train_s:.0f} s (set-up included), run folder {run_dir}"
          + ("; the Leray projection inside the loss" if args.spon_project_in_training else ""), flush=True)
    model.eval()
    mask = model.layout.mask.cpu()
    t1 = time.perf_counter()
    P = velocity_leray(problem, mask)  # factorised once: the option's set-up
    leray_s = time.perf_counter() - t1
    project = leray_state_projection(P) if args.spon_leray_loop else None
    t0 = time.perf_counter()
    s0 = torch.as_tensor(test.states[:, 0], device=model.device)
    p = torch.as_tensor(test.params, device=model.device)
    pred = model.rollout(s0, p, test.n_stored - 1, project=project).cpu().numpy()
    rollout_s = time.perf_counter() - t0
    ev = evaluate_rollout(problem, pred, test.states, test.params[:, 0], h,
                          "SPON (divergence-free at every step)" if project else "SPON", dt=test.dt)
    if project is not None:  # the same weights without the projection in the loop, for comparison
        plain = model.rollout(s0, p, test.n_stored - 1).cpu().numpy()
        ev["plain"] = evaluate_rollout(problem, plain, test.states, test.params[:, 0], h, "SPON without it",
                                       dt=test.dt)
    ev["max_boundary_error"] = float(np.abs(pred[:, :, mask.numpy()] - test.states[:, :, mask.numpy()]).max())
    cpu = model.to("cpu")
    s1, p1 = torch.as_tensor(test.states[:1, 0]), torch.as_tensor(test.params[:1])
    rounds = 3
    with cpu.inference():  # a step of a rollout: constant weights, the processor frozen
        if project is not None:  # the step of the rollout evaluated: the network's, then the projection
            plain_step = step_time(lambda: cpu.step(s1, p1), args.repeats)
            ev.update(interleaved_step_times(problem, cyl["test_full"], 0, lambda: project(cpu.step(s1, p1)),
                                             rounds=rounds,
                                             fe_steps=max(2, args.fe_steps // rounds), repeats=args.repeats))
            ev["plain_step_s"] = plain_step
            print(f"SPON: step at batch 1 without the projection {plain_step * 1e3:.2f} ms (info: "
                  f"{plain_step / ev['fe_step_s']:.3f} of the FE step)", flush=True)
        else:
            ev.update(interleaved_step_times(problem, cyl["test_full"], 0, lambda: cpu.step(s1, p1), rounds=rounds,
                                             fe_steps=max(2, args.fe_steps // rounds), repeats=args.repeats))
    t1 = time.perf_counter()
    ev.update(divergence_free_rollout(problem, mask, pred, test.states, P=P))
    print(f"SPON: max Dirichlet error along the rollouts {ev['max_boundary_error']:.1e}; rollout {rollout_s:.1f} s; "
          f"step at batch 1 (CPU, one thread) {ev['step_s'] * 1e3:.2f} ms, the FE step in the same {rounds} rounds "
          f"{ev['fe_step_s'] * 1e3:.1f} ms"
          + (f" (the fe_step stage's {results['fe_step']['fe_step_s'] * 1e3:.1f} ms)" if "fe_step" in results else "")
          + f"; a surrogate step advances {s['every']} FE steps' time, so the ratio compares it with "
          f"{s['every']} FE steps (one call against one FE step: {ev['step_s'] / ev['fe_step_s']:.3f})",
          flush=True)
    print(f"SPON divergence-free option ({ev['leray']}, set-up {leray_s:.0f} s, applied to the rollout "
          f"{time.perf_counter() - t1:.0f} s): max ||div u||/||grad u|| "
          f"along the rollouts {ev['div_free']:.2e} (raw rollout {ev['div_raw']:.2e}); Dirichlet error "
          f"{ev['div_free_boundary_error']:.1e}; velocity rel L2 time average {ev['div_free_rel_l2_time_avg']:.3e} "
          f"(unprojected {ev['rel_l2_time_avg']:.3e})", flush=True)
    if "mgn_floor" in results and "mgn" in results:
        print(f"SPON: info: the MGN's vertex-graph floor is {results['mgn_floor']:.3e} (its time average "
              f"{results['mgn']['rel_l2_time_avg']:.3e}); SPON time average / that floor "
              f"{ev['rel_l2_time_avg'] / results['mgn_floor']:.3f}", flush=True)
    results["spon"] = {"processor": processor, "options": options, "steps": result.step, "train_s": train_s,
                       "rollout_s": rollout_s, **ev}
    ratios = {"dyn_rollout_vs_mgn": (ev["rel_l2_time_avg"] / results["mgn"]["rel_l2_time_avg"]
                                     if "mgn" in results else None),
              "dyn_strouhal_error": ev["strouhal_rel_error"],
              "dyn_step_vs_fe_step": ev["step_s"] / (s["every"] * ev["fe_step_s"]),
              "dyn_div_free": ev["div_free"]}
    results["ratios"] = {**results.get("ratios", {}), **ratios}
    for name, value in ratios.items():
        if value is None:
            print(f"ratio {name} not measured: its other side is a stage of the same run (--stage all)", flush=True)
        else:
            print_ratio(name, value)


def stage_beam(args: argparse.Namespace, s: dict[str, Any], out: Path, results: dict[str, Any]) -> None:
    from beam_newton import fewest_steps

    from fe_operators.data import FEDataset, FEFile, generate_dataset
    from fe_operators.fem import FENorm
    from fe_operators.problems.hyperelastic import HyperelasticBeamProblem

    spec, counts = s["beam_mesh"], s["beam_counts"]
    total = sum(counts)
    path = out / f"beam-{spec.replace(':', '').replace('/', '-').replace(',', '_')}-seed{args.seed}.h5"
    t0 = time.perf_counter()
    report = generate_dataset("hyperelastic_beam", spec, total, path, seed=args.seed, progress=False)
    file = FEFile(path)
    problem = file.rebuild_problem()
    print(f"beam: {path} ({report.generated} of {total} samples generated now, {time.perf_counter() - t0:.0f} s), "
          f"{problem.output_space.dim()} displacement DOFs; split {counts[0]}/{counts[1]}/{counts[2]}", flush=True)
    cuts = np.cumsum([0, *counts])
    data = {"file": file, "problem": problem, "spec": spec,
            "split": {k: (torch.empty(counts[i]),) for i, k in enumerate(("train", "val", "test"))}}
    check_load("beam training")
    model, info = run_spon(data, args.beam_processor, {}, budget=args.beam_budget, lr=args.beam_lr, args=args,
                           label=f"beam SPON-{args.beam_processor}", loss=args.beam_loss,
                           batch=args.beam_batch, run_root=runs_folder(args))
    test = FEDataset(path, range(cuts[2], cuts[3]), preload=True)
    x, y = test.raw(np.arange(len(test)))
    net = model.model
    dtype = next(net.parameters()).dtype
    x = {k: v.to(dtype) for k, v in x.items()} if isinstance(x, dict) else x.to(dtype)

    def predict() -> torch.Tensor:
        n = y.shape[0]
        pick = (lambda a, k: {n_: v[k:k + args.infer_batch] for n_, v in a.items()}) if isinstance(x, dict) else \
            (lambda a, k: a[k:k + args.infer_batch])
        return torch.cat([net(pick(x, k)) for k in range(0, n, args.infer_batch)])

    with torch.no_grad():
        predict()
        infer = math.inf
        for _ in range(2):
            t1 = time.perf_counter()
            pred = predict()
            infer = min(infer, time.perf_counter() - t1)
    rel = FENorm.l2(problem.output_space).relative(pred.double().reshape(y.shape), y.double())
    per_sample = infer / y.shape[0]
    # the Newton solve it replaces, on the first test samples (median over them)
    inputs_np, _ = file.read(range(cuts[2], cuts[2] + min(3, counts[2])))
    newton, steps = [], []
    for k in range(min(3, counts[2])):
        inputs = {name: fd.Function(problem.input_spaces[name], val=arr[k].copy()) for name, arr in inputs_np.items()}
        n = fewest_steps(problem.mesh, inputs)
        solver = HyperelasticBeamProblem(problem.mesh, load_steps=n, max_load_steps=n)
        solver.solve(inputs)  # untimed: compilation, symbolic factorisation
        t1 = time.perf_counter()
        solver.solve(inputs)
        newton.append(time.perf_counter() - t1)
        steps.append(n)
    newton_s = statistics.median(newton)
    ratio = per_sample / newton_s
    results["beam"] = {**info, "rel_l2": float(rel.mean()), "infer_s_per_sample": per_sample, "newton_s": newton_s,
                       "load_steps": steps, "ratio": ratio}
    print(f"beam: SPON relative L2 {float(rel.mean()):.4f} on {y.shape[0]} test samples; batched inference "
          f"{per_sample * 1e3:.2f} ms per sample (batch {args.infer_batch}); Newton {newton_s:.3f} s (median of "
          f"{len(newton)}, fewest load steps {steps}, direct LU, rtol 1e-8)", flush=True)
    print_ratios({"beam_infer_vs_newton": ratio})


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("all", *STAGES), default="all")
    p.add_argument("--smoke", action="store_true", help="tiny settings: checks that every stage runs")
    p.add_argument("--budget", type=float, default=420.0, help="training seconds of each cylinder model")
    p.add_argument("--beam-budget", type=float, default=300.0, help="training seconds of the beam SPON")
    p.add_argument("--resolution", type=float, default=0.35, help="dfg_mesh resolution of the cylinder data")
    p.add_argument("--fe-steps", type=int, default=40, help="timed FE steps (default 40)")
    p.add_argument("--repeats", type=int, default=5, help="timed surrogate steps (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mgn-graph", choices=("p2", "p1"), default="p1",
                   help="MGN on the vertices (default: 7x fewer edges, midpoints interpolated, the interpolation "
                        "floor printed) or on the P2 nodes (exact, 6x the cost: 2-3 s a step)")
    p.add_argument("--gen-procs", type=int, default=None,
                   help="MPI processes of the cylinder data generation (mpiexec; 1: in this process; default 2, "
                        "smoke 1)")
    p.add_argument("--spon-processor", choices=tuple(SPON_OPTIONS), default="hierarchical",
                   help="processor of the rollout SPON (default hierarchical: width 32 coarse / 16 fine, relu, one "
                        "spectral layer, a batch-1 step about 1/20 of the GNN's; gnn: width 48, 4 layers)")
    p.add_argument("--spon-options", default=None, metavar="JSON",
                   help="processor options of the rollout SPON over the defaults, e.g. '{\"width\": 16}'")
    p.add_argument("--spon-lr", type=float, default=1e-3, help="peak learning rate of the rollout SPON")
    p.add_argument("--spon-batch", type=int, default=8, help="windows per update of the rollout SPON")
    p.add_argument("--spon-unroll", type=int, default=None, help="steps of the rollout SPON's unrolled loss (default 4)")
    p.add_argument("--spon-noise", type=float, default=None,
                   help="training noise std of the rollout SPON, times each channel's std (default 0.05)")
    p.add_argument("--spon-leray-loop", action=argparse.BooleanOptionalAction, default=True,
                   help="roll the SPON out with the divergence-free option at every step (the Leray projection of "
                        "each new velocity, RolloutSPON.rollout's project; default on); the rollout without it is "
                        "printed beside it")
    p.add_argument("--spon-pushforward", type=int, default=None, metavar="M",
                   help="pushforward trick of the rollout SPON: each batch first unrolls m ~ U{0..M} steps without "
                        "gradient (default 4; 0: off)")
    p.add_argument("--spon-diagnostic-pressure", action="store_true",
                   help="the rollout SPON predicts the pressure from the velocity instead of evolving it "
                        "(rollout_spon_for_problem's diagnostic; default off: measured worse)")
    p.add_argument("--spon-read-diagnostic", action="store_true",
                   help="with --spon-diagnostic-pressure: the network still reads the pressure")
    p.add_argument("--spon-pushforward-curriculum", action="store_true",
                   help="grow the rollout SPON's largest pushforward m from 0 to M over the budget")
    p.add_argument("--every", type=int, default=None, metavar="K",
                   help=f"the surrogates' step in stored steps: train and roll out on every K-th stored state "
                        f"(default {EVERY}; smoke 2)")
    p.add_argument("--spon-project-in-training", action="store_true",
                   help="the Leray projection inside the SPON's unrolled loss too (train_rollout(projection=...)); "
                        "measured worse at equal time (module docstring)")
    p.add_argument("--device", default="cpu", help="training device of the models (timings are CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (training Re: seed, held out: seed + 1)")
    p.add_argument("--train-seed", type=int, default=None,
                   help="seed of the cylinder models' initialisation and batches (default --seed): replicates on the "
                        "same data")
    p.add_argument("--batch", type=int, default=8, help="batch of the beam SPON (run_spon)")
    p.add_argument("--beam-batch", type=int, default=8)
    p.add_argument("--beam-processor", choices=("gnn", "hierarchical"), default="gnn",
                   help="processor of the beam SPON (its defaults)")
    p.add_argument("--beam-lr", type=float, default=3e-3)
    p.add_argument("--beam-loss", choices=("scaled_l2", "rel_l2"), default="scaled_l2",
                   help="training loss of the beam SPON (train.loss scaled_l2: the beam's output norms span 233x, "
                        "and the per-sample relative loss held a fresh model at zero for about 100 updates)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--infer-batch", type=int, default=10)
    p.add_argument("--beam-mesh", default=None, help="mesh spec of the beam (default the family's DEFAULT_MESH)")
    p.add_argument("--beam-counts", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help="beam samples (default 80 10 20)")
    p.add_argument("--out", default="out/bench/dynamics", help="data, runs and results.json")
    p.add_argument("--runs", default=None, help="the training runs' folder and results file (default OUT/runs and OUT): two "
                                                "runs sharing OUT's data at the same time, e.g. with another --every")
    args = p.parse_args(argv)
    if args.gen_procs is None:
        args.gen_procs = 1 if args.smoke else 2
    if args.smoke:
        args.budget, args.beam_budget = min(args.budget, 4.0), min(args.beam_budget, 4.0)
        args.fe_steps, args.repeats = min(args.fe_steps, 4), min(args.repeats, 2)
        if args.out == "out/bench/dynamics":
            args.out = "out/bench/dynamics-smoke"
    if args.train_seed is None:
        args.train_seed = args.seed
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    print(machine_summary(), flush=True)
    check_load("start")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings(args)
    if args.spon_unroll is not None:
        s["unroll"] = args.spon_unroll
    if args.spon_noise is not None:
        s["noise"] = args.spon_noise
    if args.spon_pushforward is not None:
        s["pushforward"] = args.spon_pushforward
    s["pushforward_curriculum"] = bool(args.spon_pushforward_curriculum)
    if args.every is not None:
        if args.every < 1:
            raise SystemExit(f"bench-dynamics: --every must be a positive integer, got {args.every}")
        s["every"] = args.every
    if args.beam_mesh is not None:
        s["beam_mesh"] = args.beam_mesh
    if args.beam_counts is not None:
        s["beam_counts"] = tuple(args.beam_counts)
    stages = STAGES if args.stage == "all" else (args.stage,)
    if "spon" in stages:
        spon_processor(args, s)  # bad options fail now, not after the MGN
    print("targets: " + ", ".join(f"{k} <= {v:g}" for k, v in TARGETS.items())
          + f"; budgets: cylinder models {args.budget:.0f} s each, beam SPON {args.beam_budget:.0f} s"
          + (" (smoke)" if args.smoke else ""), flush=True)
    results: dict[str, Any] = {"smoke": args.smoke}
    cyl = cylinder(args, s, out) if {"fe_step", "mgn", "spon"} & set(stages) else None
    for stage in stages:
        t1 = time.perf_counter()
        if stage == "fe_step":
            stage_fe_step(args, s, cyl, results)
        elif stage == "mgn":
            stage_mgn(args, s, cyl, results)
        elif stage == "spon":
            stage_spon(args, s, cyl, results)
        else:
            stage_beam(args, s, out, results)
        print(f"stage {stage}: {time.perf_counter() - t1:.0f} s", flush=True)
    results["total_s"] = time.perf_counter() - t0
    where = Path(args.runs) if args.runs else out
    where.mkdir(parents=True, exist_ok=True)
    with open(where / f"results-{args.stage}.json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"bench-dynamics: {results['total_s']:.0f} s in all", flush=True)
    return results


if __name__ == "__main__":
    main()
