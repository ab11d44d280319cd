"""``make bench-dynamics`` (issue 16): rollout surrogates of cylinder flow, and the hyperelastic beam.

Stages (``--stage``, default ``all``, in this order):

``fe_step``
    The cylinder data (:func:`cylinder_data`), then the generator's warm FE time step on
    the same mesh, assembly included (the median of ``--fe-steps`` BDF2 steps from a
    stored state, the solver's occasional refactorisations included in the mean, which
    is printed too), and the MGN step at batch 1: the CPU side of
    ``ratio dyn_step_vs_fe_step``.
``mgn``
    The pinned MeshGraphNets baseline (:mod:`mgn`) trained for ``--budget`` seconds on the
    training trajectories' first ``train_horizon`` stored steps, rolled out from the first
    stored state of every held-out trajectory over the whole stored horizon
    (:func:`evaluate_rollout`: relative L2 of velocity at steps 1, 50 and the last, its time
    average, and the Strouhal number and lift amplitude of the rollout against the FE's).
``spon``
    The rollout SPON's rows: **not measured** until the rollout SPON is merged (prints
    so). The lead wires it here: train it on the same :class:`TrajectoryData` for the
    same ``--budget``, :func:`evaluate_rollout` its rollout, and print
    ``dyn_rollout_vs_mgn``, ``dyn_strouhal_error``, ``dyn_step_vs_fe_step`` and
    ``dyn_div_free`` from :func:`spon_ratios`.
``beam``
    A SPON (GNN processor, through :class:`fe_operators.train.Trainer` by
    :func:`common.run_spon`) trained for ``--beam-budget`` seconds on the hyperelastic
    beam family (generated files, cached), batched inference per sample against the Newton
    solve it replaces (the fewest load steps that converge, direct LU, rtol 1e-8:
    :mod:`beam_newton`), the relative L2 of the SPON printed: ``ratio beam_infer_vs_newton``.

Planned full run (the defaults; 2 cores, torch 2 threads), about 60 minutes except for the MGN
rollout (below):

* cylinder data: :func:`fe_operators.meshes.dfg.dfg_mesh` at resolution 0.35 (1,333
  triangles, 6,291 Taylor–Hood DOFs, 2,783 P2 nodes), dt = 1/400 stored every step, 24
  training Reynolds numbers evenly spaced in [80, 200] and 6 held-out ones at midpoints
  between them; one continuation chain in increasing Re: the first trajectory (Re = 80)
  spins up 4 time units from the perturbed steady state, each next one starts from the
  previous developed state scaled to its Re (velocity by the Re ratio, pressure by its
  square: the inflow data are then exact) and spins up 0.75 time units; 700 stored steps
  (1.75 time units), of which the first 380 are the training horizon and all 700 the
  rollout.  Measured on this mesh (loaded machine): Re = 80 sheds with St = 0.289,
  period 0.432 (173 steps), its lift amplitude within 1 % of the limit cycle by t = 3 and
  0.1 % by t = 4; Re = 200 has St = 0.316, period 0.158 (63 stored steps per period, the
  fewest of the family: >= 50); continuing from Re = 80 straight to Re = 200, the lift
  amplitude is within 1.3 % after 1 time unit and 0.1 % after 1.5 (the chain's steps
  are 5 in Re).  So the training horizon is 2.2 periods at Re = 80 (6 at Re = 200) and
  the rollout 4 periods at Re = 80 (1.8 beyond the training horizon), enough for St
  over 3 periods from upward zero crossings at any phase.  (The steady Newton solve of
  :meth:`initial_state` diverges at Re = 200 on this mesh; the chain never needs it
  above Re = 80.)  About 1,600 + 30 x (300 + 700) = 31,600 FE steps at 30-50 ms (quiet
  machine, one process): 16-26 minutes, cached in ``--out`` (a rerun of any stage
  reuses them); the MPI ensemble of ``fe-operators generate`` on 2 processes halves it
  once the trajectory files replace :func:`cylinder_data`;
* MGN: 600 s of training (``--budget``).  The pinned design costs 26.2 G multiply-adds a
  step on the P2 graph of this mesh (2,783 nodes, 28,344 directed edges; 2.33 M
  parameters), 1.9-3.2 s a step at batch 1 on one loaded core, 5-17 s for a training
  update of batch 2: 600 s are some 40-120 updates (the paper trains for millions), and
  the rollout of 6 x 700 steps (110 T multiply-adds) takes 30-60 minutes on 2 cores,
  which breaks the 60-minute plan.  ``--mgn-graph p1`` (the vertex graph: 725 nodes,
  4,116 edges, 4.3 G a step, 0.44 s) brings the rollout to 5-10 minutes at the price of
  the midpoints' interpolation error as a floor (printed; 0.12 on the smoke mesh);
  ``--device cuda`` trains and rolls out on a GPU where there is one (the step timings
  stay on the CPU);
* rollout SPON: the same 600 s once merged;
* beam: 80/10/20 samples on the family's default mesh (32,882 DOFs; 2-5 s a solve: 4-9
  minutes, cached), 360 s of training (``--beam-budget``), the Newton timing 1 minute.

``--smoke``: a coarse mesh (resolution 0.2), Reynolds numbers 90 and 150 for training and
120 held out, a few steps, a tiny MGN (latent 16, 2 blocks) and beam (40 x 4 cells, 6/2/2
samples), a few seconds of training each: checks that every stage runs (tests run it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
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
TARGETS = {"dyn_rollout_vs_mgn": 0.7, "dyn_strouhal_error": 0.02, "dyn_step_vs_fe_step": 0.1,
           "dyn_div_free": 1e-10, "beam_infer_vs_newton": 0.05}
NOT_MERGED = "not measured: rollout SPON not merged"


# ---------------------------------------------------------------------------------- cylinder data
def cylinder_problem(resolution: float, dt: float, out: Path) -> Any:
    """The cylinder family on ``dfg_mesh(resolution)`` (cached in ``out/meshes``)."""
    from fe_operators.io import load_mesh
    from fe_operators.meshes.dfg import dfg_mesh
    from fe_operators.problems.navier_stokes import NavierStokesCylinder

    mesh = load_mesh(str(dfg_mesh(out / "meshes", resolution)))
    return NavierStokesCylinder(mesh, dt=dt)


def cylinder_data(problem: Any, reynolds: Sequence[float], *, n_steps: int, spinup_time: float,
                  continuation_time: float, cache: Path | None = None,
                  log: Callable[[str], None] = print) -> TrajectoryData:
    """Trajectories of ``problem`` at the Reynolds numbers ``reynolds`` (in that order).

    Until the trajectory datasets are merged this generates them directly with
    :meth:`~fe_operators.problems.timedep.TimeDependentProblem.trajectory`; the lead switches
    its body to ``read_trajectories(path)`` of a file generated with the same settings.

    One continuation chain in increasing ``Re``: the first trajectory spins up
    ``spinup_time`` from :meth:`initial_state`, each next one starts from the previous
    one's last state scaled to its ``Re`` (velocity by the ratio of the Reynolds numbers,
    pressure by its square, so the Dirichlet data are exact) and spins up
    ``continuation_time``. Each stores ``n_steps + 1`` states at every step ``problem.dt``.
    With ``cache`` the arrays are kept in ``cache/cylinder-<hash of the settings>.npz``.
    """
    reynolds = [float(r) for r in reynolds]
    key = json.dumps({"problem": problem.description(), "n_dofs": problem.n_dofs, "Re": reynolds,
                      "n_steps": n_steps, "spinup": spinup_time, "continuation": continuation_time},
                     sort_keys=True)
    path = None
    if cache is not None:
        path = cache / f"cylinder-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
        if path.exists():
            states = np.load(path)["states"]
            log(f"data: {path} (cached): {states.shape[0]} trajectories x {states.shape[1]} states x "
                f"{states.shape[2]} DOFs")
            return TrajectoryData(states, np.array(reynolds)[:, None], ("Re",), problem.dt, problem.description())
    order = np.argsort(reynolds)
    states = np.empty((len(reynolds), n_steps + 1, problem.n_dofs))
    t0, previous = time.perf_counter(), None
    for k in order:
        re = reynolds[k]
        if previous is None:
            initial, spin = None, spinup_time
        else:
            ratio = re / previous[0]
            arr = previous[1].copy()
            n_u = problem.velocity_space.dof_dset.size * 2
            arr[:n_u] *= ratio
            arr[n_u:] *= ratio ** 2
            initial, spin = problem.array_to_state(arr), continuation_time
        spin_steps = int(round(spin / problem.dt))
        states[k] = problem.trajectory({"Re": re}, n_steps=n_steps, spinup_steps=spin_steps, initial=initial)
        previous = (re, states[k, -1])
        log(f"  data: Re {re:6.1f}: {spin_steps} spin-up + {n_steps} stored steps "
            f"({time.perf_counter() - t0:.0f} s so far)")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, states=states)
        tmp.replace(path)
    log(f"data: {len(reynolds)} trajectories x {n_steps + 1} states x {problem.n_dofs} DOFs in "
        f"{time.perf_counter() - t0:.0f} s")
    return TrajectoryData(states, np.array(reynolds)[:, None], ("Re",), problem.dt, problem.description())


# ---------------------------------------------------------------------------------- evaluation
def lift_series(problem: Any, states: np.ndarray, re: float) -> np.ndarray:
    """``c_L`` at every state from the third on (BDF2 residual, volume-integral method)."""
    funcs = [problem.array_to_state(s) for s in states[:3]]
    out = np.empty(states.shape[0] - 2)
    for j in range(2, states.shape[0]):
        if j > 2:
            funcs = [problem.array_to_state(states[j]), *funcs[:2]]
        else:
            funcs = funcs[::-1]
        out[j - 2] = problem.force_coefficients(funcs, {"Re": re})[1]
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
                     train_horizon: int, label: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Errors of rollouts ``pred`` against the FE trajectories ``true`` (both ``(B, T + 1, n_dofs)``).

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
    times = problem.dt * np.arange(2, T1)
    st = np.full((B, 2), math.nan)
    amp = np.full((B, 2), math.nan)
    used = []
    for b in range(B):
        for c, series in enumerate((pred[b], true[b, :T1])):
            lift = lift_series(problem, series, float(reynolds[b]))
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


def step_time(step: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``step()`` (no autograd) after one warm-up call."""
    with torch.no_grad():
        step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------- the stages
def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Mesh, Reynolds numbers, steps and the MGN design of a full or a smoke run."""
    if args.smoke:
        return {"resolution": 0.2, "dt": 1 / 100, "train_re": [90.0, 150.0], "test_re": [120.0], "n_steps": 8,
                "train_horizon": 5, "spinup": 0.02, "continuation": 0.02,
                "mgn": MGNConfig(latent=16, message_passing_steps=2, warmup_batches=2),
                "beam_mesh": "rectangle:1,0.1:40x4", "beam_counts": (6, 2, 2)}
    train = np.linspace(80.0, 200.0, 24)
    test = 0.5 * (train[1:] + train[:-1])[[1, 5, 9, 13, 17, 21]]
    from fe_operators.problems.hyperelastic import DEFAULT_MESH

    return {"resolution": args.resolution, "dt": 1 / 400, "train_re": train.tolist(), "test_re": test.tolist(),
            "n_steps": 700, "train_horizon": 380, "spinup": 4.0, "continuation": 0.75, "mgn": MGNConfig(),
            "beam_mesh": DEFAULT_MESH, "beam_counts": (80, 10, 20)}


def cylinder(args: argparse.Namespace, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """The problem, the graph and the train/test trajectories (cached)."""
    t0 = time.perf_counter()
    problem = cylinder_problem(s["resolution"], s["dt"], out)
    n_train = len(s["train_re"])
    data = cylinder_data(problem, [*s["train_re"], *s["test_re"]], n_steps=s["n_steps"], spinup_time=s["spinup"],
                         continuation_time=s["continuation"], cache=out)
    print(f"cylinder: dfg_mesh(r={s['resolution']}), {problem.n_dofs} DOFs, dt {problem.dt:g}, Re train "
          f"{n_train} in [{min(s['train_re']):g}, {max(s['train_re']):g}], held out "
          f"{', '.join(f'{r:.1f}' for r in s['test_re'])}; {data.n_stored} stored states, training horizon "
          f"{s['train_horizon']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"problem": problem, "graph": cylinder_mesh_graph(problem, args.mgn_graph),
            "train": data.subset(range(n_train)), "test": data.subset(range(n_train, data.n_samples))}


def stage_fe_step(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    fe = fe_step_time(cyl["problem"], cyl["test"], 0, args.fe_steps)
    torch.manual_seed(args.seed)
    model = MGNSimulator(cyl["graph"], 1, s["mgn"], device="cpu")
    model.eval()
    state = torch.as_tensor(cyl["test"].states[:1, 0], dtype=torch.float32)
    re = torch.tensor([[float(cyl["test"].params[0, 0])]])
    mgn_s = step_time(lambda: model.step(state, re), args.repeats)
    results["fe_step"] = {"fe_step_s": fe["median"], "fe_step_mean_s": fe["mean"], "mgn_step_s": mgn_s}
    print(f"FE time step (warm, assembly included, CPU): median {fe['median'] * 1e3:.1f} ms, mean "
          f"{fe['mean'] * 1e3:.1f} ms over {args.fe_steps} steps; MGN step at batch 1: {mgn_s * 1e3:.1f} ms "
          f"(info: mgn_step_vs_fe_step {mgn_s / fe['median']:.2f})", flush=True)
    print(f"ratio dyn_step_vs_fe_step {NOT_MERGED} (the FE side is {fe['median'] * 1e3:.1f} ms)", flush=True)


def stage_mgn(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    check_load("MGN training")
    train, test = cyl["train"], cyl["test"]
    torch.manual_seed(args.seed)
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
    info = train_mgn(model, train.states, train.params, budget=args.budget, horizon=s["train_horizon"],
                     seed=args.seed)
    t0 = time.perf_counter()
    pred = rollout_mgn(model, test.states[:, 0], test.params, test.n_stored - 1)
    info["rollout_s"] = time.perf_counter() - t0
    ev = evaluate_rollout(cyl["problem"], pred, test.states, test.params[:, 0], s["train_horizon"], "MGN")
    idx = cyl["graph"].dirichlet_dofs.numpy()
    ev["max_boundary_error"] = float(np.abs(pred[:, :, idx] - test.states[:, :, idx]).max())
    print(f"MGN: max Dirichlet error along the rollouts {ev['max_boundary_error']:.1e}; rollout "
          f"{info['rollout_s']:.1f} s", flush=True)
    results["mgn"] = {**info, **ev}


def spon_ratios(spon: dict[str, Any], mgn: dict[str, Any], fe_step_s: float) -> dict[str, float]:
    """The issue's cylinder ratios from a rollout SPON's evaluation (the keys of :func:`evaluate_rollout`
    plus ``step_s``, its step at batch 1 on the CPU, and ``div_free``, the largest
    ``||div u|| / ||grad u||`` along its rollout with the divergence-free option on)."""
    return {"dyn_rollout_vs_mgn": spon["rel_l2_time_avg"] / mgn["rel_l2_time_avg"],
            "dyn_strouhal_error": spon["strouhal_rel_error"],
            "dyn_step_vs_fe_step": spon["step_s"] / fe_step_s,
            "dyn_div_free": spon["div_free"]}


def stage_spon(args: argparse.Namespace, s: dict[str, Any], cyl: dict[str, Any], results: dict[str, Any]) -> None:
    """The rollout SPON's rows; placeholders until it is merged.

    To wire (the lead): build the rollout SPON for ``cyl["problem"]`` (Dirichlet data
    lifted every step), train it on ``cyl["train"]`` with the first ``s["train_horizon"]``
    steps for ``args.budget`` seconds (the Trainer, time-budget schedule), roll it out
    from ``cyl["test"].states[:, 0]`` over ``cyl["test"].n_stored - 1`` steps, then
    ``ev = evaluate_rollout(cyl["problem"], pred, cyl["test"].states, cyl["test"].params[:, 0],
    s["train_horizon"], "SPON")``, ``ev["step_s"]`` its CPU step at batch 1 (:func:`step_time`),
    ``ev["div_free"]`` the largest ``problem.divergence_ratio`` of a rollout with the
    divergence-free option on (on the space the option uses), and print
    ``print_ratios(spon_ratios(ev, results["mgn"], results["fe_step"]["fe_step_s"]))``.
    """
    for name in ("dyn_rollout_vs_mgn", "dyn_strouhal_error", "dyn_step_vs_fe_step", "dyn_div_free"):
        print(f"ratio {name} {NOT_MERGED} (target <= {TARGETS[name]:g})", flush=True)
    results["spon"] = NOT_MERGED


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
    model, info = run_spon(data, "gnn", {}, budget=args.beam_budget, lr=args.beam_lr, args=args, label="beam SPON-GNN",
                           batch=args.beam_batch, run_root=out / "runs")
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
    p.add_argument("--budget", type=float, default=600.0, help="training seconds of each cylinder model")
    p.add_argument("--beam-budget", type=float, default=360.0, help="training seconds of the beam SPON")
    p.add_argument("--resolution", type=float, default=0.35, help="dfg_mesh resolution of the cylinder data")
    p.add_argument("--fe-steps", type=int, default=40, help="timed FE steps (default 40)")
    p.add_argument("--repeats", type=int, default=5, help="timed surrogate steps (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mgn-graph", choices=("p2", "p1"), default="p2",
                   help="MGN on the P2 nodes (default) or on the vertices (7x fewer edges, midpoints interpolated)")
    p.add_argument("--device", default="cpu", help="training device of the models (timings are CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8, help="batch of the beam SPON (run_spon)")
    p.add_argument("--beam-batch", type=int, default=8)
    p.add_argument("--beam-lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--infer-batch", type=int, default=10)
    p.add_argument("--beam-mesh", default=None, help="mesh spec of the beam (default the family's DEFAULT_MESH)")
    p.add_argument("--beam-counts", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help="beam samples (default 80 10 20)")
    p.add_argument("--out", default="out/bench/dynamics", help="data, runs and results.json")
    args = p.parse_args(argv)
    if args.smoke:
        args.budget, args.beam_budget = min(args.budget, 4.0), min(args.beam_budget, 4.0)
        args.fe_steps, args.repeats = min(args.fe_steps, 4), min(args.repeats, 2)
        if args.out == "out/bench/dynamics":
            args.out = "out/bench/dynamics-smoke"
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
    if args.beam_mesh is not None:
        s["beam_mesh"] = args.beam_mesh
    if args.beam_counts is not None:
        s["beam_counts"] = tuple(args.beam_counts)
    stages = STAGES if args.stage == "all" else (args.stage,)
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
    with open(out / f"results-{args.stage}.json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"bench-dynamics: {results['total_s']:.0f} s in all", flush=True)
    return results


if __name__ == "__main__":
    main()
