"""What the benchmarks share: the machine report, load warnings, ratio lines, timing, and the
pinned baselines' data, timed training and evaluation.

Every ``make bench-*`` script prints :func:`machine_summary` first and its results as
``ratio <name> <value>`` lines (:func:`print_ratios`); wall-clock comparisons warn when
the machine is loaded (:func:`check_load`). ``bench-spon`` and ``bench-mgno`` train their
models (SPON, the pinned FNO; ``mgno_grid``'s MgNO) for the same wall-clock budget with
:func:`train_timed` on the Darcy files of :func:`mesh_dataset`, and measure them with
:func:`evaluate` (batched inference, timed by :func:`timed_predict`).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["machine_summary", "check_load", "median_time", "print_ratios", "timed_predict", "ScaledSPON",
           "n_params", "evaluate", "cosine_schedule", "train_timed", "val_fn", "mesh_dataset", "dataset",
           "start_training_bench", "run_spon", "pinned_fno", "train_grid_fno", "run_fno", "transfer_floor",
           "fe_solve_time"]


# ---------------------------------------------------------------------------------- machine, timing, ratios
def machine_summary() -> str:
    """One line: CPU model, cores, memory, Python, torch and numba threads."""
    import numba
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}; python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_load(where: str) -> None:
    """Print a warning line when the 1-minute load average exceeds the cores (the budgets are then unfair)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        print(f"warning: load average {load:.1f} on {cores} cores at {where}: the machine is shared, "
              f"wall-clock budgets are unfair", flush=True)


def print_ratios(ratios: Mapping[str, float], targets: Mapping[str, float] | None = None, also: str = "") -> None:
    """The result lines ``ratio <name> <value>``, after a ``targets:`` line (``name <= target``, then ``also``)."""
    if targets is not None:
        print("targets: " + ", ".join(f"{k} <= {v}" for k, v in targets.items()) + also)
    for name, value in ratios.items():
        print(f"ratio {name} {value:.3f}")


def timed_predict(predict: Callable[[Any], Any], a: Any, batch: int, passes: int = 2) -> tuple[Any, float]:
    """``predict`` on ``a`` in batches of ``batch``, and the seconds of the fastest of ``passes`` passes.

    One warm-up batch first (first-call caches); the fastest pass, because the machine
    may be shared; the predictions are that pass's. Runs without autograd.
    """
    with torch.no_grad():
        predict(a[:batch])  # warm-up
        seconds = math.inf
        for _ in range(passes):
            t0 = time.perf_counter()
            pred = torch.cat([predict(a[k:k + batch]) for k in range(0, a.shape[0], batch)])
            seconds = min(seconds, time.perf_counter() - t0)
    return pred, seconds


# ---------------------------------------------------------------------------------- timed training
class ScaledSPON(torch.nn.Module):
    """``a -> u_scale * spon((a - a_mean) / a_std)``: one number each, so the zero lifting stays exactly zero.

    Shapes: ``a`` ``(batch, n_dofs)`` physical; output ``(batch, n_dofs)`` float64.
    """

    def __init__(self, spon: torch.nn.Module, a_train: torch.Tensor, u_train: torch.Tensor) -> None:
        super().__init__()
        self.spon = spon
        self.register_buffer("a_mean", a_train.mean())
        self.register_buffer("a_std", a_train.std(unbiased=False))
        self.register_buffer("u_scale", u_train.pow(2).mean().sqrt())

    def forward(self, a: torch.Tensor, context: Any = None) -> torch.Tensor:
        x = ((a - self.a_mean) / self.a_std).unsqueeze(-1)
        return self.spon(x, context=context) * self.u_scale


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def evaluate(predict: Callable[[Any], Any], a: Any, u: Any, norm: Any, mask: Any, batch: int) -> dict[str, float]:
    """Mean relative FE-L2 error, max boundary error and batched inference seconds per sample."""
    pred, seconds = timed_predict(predict, a, batch)
    with torch.no_grad():
        rel = norm.relative(pred.double(), u.double())
        bnd = (pred[:, mask] - u[:, mask]).abs().max()
    return {"rel_l2": float(rel.mean()), "max_boundary_error": float(bnd), "infer_s": seconds / a.shape[0]}


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def cosine_schedule(lr: float) -> Callable[[torch.optim.Optimizer, float], None]:
    """Learning rate ``lr (1 + cos(pi t)) / 2`` at budget fraction ``t`` (the default of :func:`train_timed`)."""

    def set_lr(opt: torch.optim.Optimizer, frac: float) -> None:
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * frac))

    return set_lr


def train_timed(model: Any, step_loss: Callable[[Any, Any], Any], val_error: Callable[[], float],
                a: Any, u: Any, *, budget: float, lr: float, weight_decay: float, batch: int,
                seed: int, label: str, progress_every: float = 30.0,
                optimizer: torch.optim.Optimizer | None = None,
                schedule: Callable[[torch.optim.Optimizer, float], None] | None = None) -> dict[str, Any]:
    """Train for a wall-clock budget; keep the best validation weights.

    Default: AdamW (``lr``, ``weight_decay``) with a cosine decay over the budget.
    ``optimizer`` replaces AdamW; ``schedule(opt, t)`` is called before every step with
    the elapsed fraction ``t`` of the budget and sets the rate (default
    :func:`cosine_schedule`), so the schedule always ends with the budget.
    """
    opt = optimizer if optimizer is not None else torch.optim.AdamW(model.parameters(), lr=lr,
                                                                     weight_decay=weight_decay)
    set_schedule = schedule if schedule is not None else cosine_schedule(lr)
    gen = torch.Generator().manual_seed(seed)
    n = a.shape[0]
    steps_per_epoch = math.ceil(n / batch)
    steps, validated = 0, -1
    best = (math.inf, None, 0.0)
    loss = torch.tensor(math.nan)
    t0 = last_print = time.perf_counter()
    out_of_time = False
    while not out_of_time:
        perm = torch.randperm(n, generator=gen)
        model.train()
        for k in range(0, n, batch):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1.0:
                out_of_time = True
                break
            set_schedule(opt, frac)
            idx = perm[k:k + batch]
            opt.zero_grad(set_to_none=True)
            loss = step_loss(a[idx], u[idx])
            if not torch.isfinite(loss):
                raise RuntimeError(f"{label}: the loss is {float(loss)} at step {steps}")
            loss.backward()
            opt.step()
            steps += 1
        if steps == validated:
            continue
        validated = steps
        model.eval()
        err = val_error()
        if err < best[0]:
            best = (err, [t.detach().clone() for t in _tensors(model)], steps / steps_per_epoch)
        now = time.perf_counter()
        if now - last_print >= progress_every:
            last_print = now
            print(f"  {label}: epoch {steps / steps_per_epoch:7.2f}  batch loss {loss.item():.4f}  "
                  f"val rel L2 {err:.4f}  {now - t0:6.1f} s", flush=True)
    seconds = time.perf_counter() - t0
    print(f"  {label}: {steps / steps_per_epoch:.2f} epochs ({steps} steps) in {seconds:.0f} s; best val rel L2 "
          f"{best[0]:.4f} after {best[2]:.2f} epochs", flush=True)
    with torch.no_grad():
        for t, saved in zip(_tensors(model), best[1]):
            t.copy_(saved)
    model.eval()
    return {"epochs": steps / steps_per_epoch, "steps": steps, "train_s": seconds, "val_rel_l2": best[0],
            "best_epoch": best[2]}


def val_fn(predict: Callable[[Any], Any], a: Any, u: Any, norm: Any, batch: int) -> Callable[[], float]:
    def run() -> float:
        with torch.no_grad():
            pred = torch.cat([predict(a[k:k + batch]) for k in range(0, a.shape[0], batch)])
            return float(norm.relative(pred.double(), u.double()).mean())

    return run


def start_training_bench(args: argparse.Namespace) -> str:
    """The start of ``bench-spon`` and ``bench-mgno``; returns neuralop's version.

    neuralop is installed if missing (unless ``--no-install``), Firedrake imported without
    this script's flags (Firedrake hands ``sys.argv`` to PETSc), the package's "beta"
    warning of sparse CSR tensors silenced (after those imports: one of them resets the
    filters), and torch set to ``--threads`` threads.
    """
    from fno_grid import ensure_neuralop

    version = ensure_neuralop(install=not args.no_install)
    from fe_operators.petsc_argv import import_firedrake

    import_firedrake()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(args.threads)
    return version


# ---------------------------------------------------------------------------------- data
def mesh_dataset(spec: str, seed: int, counts: tuple[int, int, int], out: Path) -> dict[str, Any]:
    """Generate (or reuse) a Darcy (``coefficient: cg1``) file on mesh ``spec``; split it.

    The file is ``out/darcy-cg1-<spec without ':', '/' as '-'>-seed<seed>.h5`` (a larger
    file is reused as it is; its first ``sum(counts)`` rows are read). Returns the file,
    its rebuilt problem, the FE L2 norm of the output space and the train/val/test tensors.
    """
    from fe_operators.data import FEFile, generate_dataset
    from fe_operators.fem import FENorm

    total = sum(counts)
    path = out / f"darcy-cg1-{spec.replace(':', '').replace('/', '-')}-seed{seed}.h5"
    t0 = time.perf_counter()
    report = generate_dataset("darcy", spec, total, path, seed=seed,
                              params={"coefficient": "cg1"}, progress=False)
    file = FEFile(path)
    inputs, output = file.read(range(total))
    problem = file.rebuild_problem()  # its DOF numbering is checked to be the stored one
    a = torch.from_numpy(inputs["a"])
    u = torch.from_numpy(output)
    cuts = [0, counts[0], counts[0] + counts[1], total]
    split = {name: (a[cuts[k]:cuts[k + 1]], u[cuts[k]:cuts[k + 1]]) for k, name in enumerate(("train", "val", "test"))}
    print(f"data: {path} ({report.generated} of {total} samples generated now, "
          f"{time.perf_counter() - t0:.1f} s); split {counts[0]}/{counts[1]}/{counts[2]}", flush=True)
    return {"file": file, "problem": problem, "norm": FENorm.l2(problem.output_space), "split": split,
            "spec": spec}


def dataset(spec_n: int, seed: int, counts: tuple[int, int, int], out: Path) -> dict[str, Any]:
    """:func:`mesh_dataset` on ``unitsquare:<spec_n>`` (the dict also has ``"n"``)."""
    return {**mesh_dataset(f"unitsquare:{spec_n}", seed, counts, out), "n": spec_n}


# ---------------------------------------------------------------------------------- the pinned baselines
def run_spon(data: dict[str, Any], processor: str, options: dict[str, Any], *, budget: float, lr: float,
             args: argparse.Namespace, label: str, batch: int | None = None) -> tuple[Any, dict[str, Any]]:
    from fe_operators.fem import RelativeLoss
    from fe_operators.models import spon_for_problem

    a, u = data["split"]["train"]
    va, vu = data["split"]["val"]
    torch.manual_seed(args.seed)
    model = ScaledSPON(spon_for_problem(data["problem"], processor, **options), a, u)
    loss = RelativeLoss(data["norm"])
    info = train_timed(model, lambda x, y: loss(model(x), y), val_fn(model, va, vu, data["norm"], args.infer_batch),
                       a, u, budget=budget, lr=lr, weight_decay=args.weight_decay, batch=batch or args.batch,
                       seed=args.seed, label=label)
    info["params"] = n_params(model)
    return model, info


def pinned_fno() -> torch.nn.Module:
    """The pinned FNO of the baselines (neuralop): 16x16 modes, 32 hidden channels, 4 layers, one channel in and out."""
    from neuralop.models import FNO

    return FNO(n_modes=(16, 16), hidden_channels=32, n_layers=4, in_channels=1, out_channels=1)


def train_grid_fno(model: Any, grid_model: Any, a_grid: Any, u_grid: Any, data: dict[str, Any],
                   args: argparse.Namespace, label: str) -> dict[str, Any]:
    """Train a grid FNO for ``--budget`` seconds on grid values prepared once, validated on the DOFs.

    ``grid_model.forward_grid`` is trained with neuralop's relative L2 ``LpLoss(d=2, p=2)``
    on ``a_grid``, ``u_grid`` (the interpolation to the grid is not part of the training
    cost); ``model`` (DOFs in, DOFs out) is validated in the FE norm. Returns
    :func:`train_timed`'s record with ``params``.
    """
    from neuralop import LpLoss

    va, vu = data["split"]["val"]
    lp = LpLoss(d=2, p=2, reduction="mean")
    info = train_timed(model, lambda x, y: lp(grid_model.forward_grid(x), y),
                       val_fn(model, va, vu, data["norm"], args.infer_batch), a_grid, u_grid, budget=args.budget,
                       lr=args.fno_lr, weight_decay=args.weight_decay, batch=args.batch, seed=args.seed,
                       label=label)
    info["params"] = n_params(model)
    return info


def run_fno(data: dict[str, Any], args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The pinned FNO on the unit square's (n+1)² DOF grid (CG1 nodes, mapped exactly), for ``--budget`` seconds."""
    from fno_grid import GridFNO, grid_permutation

    file, n = data["file"], data["n"]
    coords = file.dof_coordinates("output")
    if not (file.dof_coordinates("inputs/a") == coords).all():
        raise ValueError("the input and output DOF nodes differ; expected both in CG1")
    to_grid, to_dofs = grid_permutation(coords, n)
    a, u = data["split"]["train"]
    torch.manual_seed(args.seed)
    model = GridFNO(pinned_fno(), to_grid, to_dofs, n + 1, a, u)
    # train on grids prepared once (the permutation is not part of the training cost)
    info = train_grid_fno(model, model, model.grid(a), model.grid(u).float(), data, args, "FNO")
    return model, info


def transfer_floor(fine: dict[str, Any], coarse: dict[str, Any], samples: int) -> float:
    """Mean relative L2 error, on the fine mesh, of the coarse mesh's own FE solution.

    For ``samples`` fine test coefficients: interpolate ``a`` onto the coarse mesh, solve
    there, interpolate the solution back, compare with the fine truth in the fine FE norm.
    A model trained on coarse data learns (at best) the coarse discrete operator, so its
    error on fine data cannot go much below this floor, however well it transfers.
    """
    import firedrake as fd

    a_fine, u_fine = fine["split"]["test"]
    A_f, A_c = fine["problem"].input_spaces["a"], coarse["problem"].input_spaces["a"]
    V_f = fine["problem"].output_space
    preds = []
    for k in range(min(samples, a_fine.shape[0])):
        a_c = fd.assemble(fd.interpolate(fd.Function(A_f, val=a_fine[k].numpy().copy()), A_c))
        u_c = coarse["problem"].solve({"a": a_c})
        preds.append(torch.from_numpy(fd.assemble(fd.interpolate(u_c, V_f)).dat.data_ro.copy()))
    pred = torch.stack(preds)
    return float(fine["norm"].relative(pred, u_fine[:pred.shape[0]].double()).mean())


def fe_solve_time(data: dict[str, Any], repeats: int) -> float:
    """Median seconds of a warm ``problem.solve`` on test inputs."""
    import firedrake as fd

    problem = data["problem"]
    A = problem.input_spaces["a"]
    a_test = data["split"]["test"][0].numpy()
    funcs = [fd.Function(A, val=a_test[k % a_test.shape[0]].copy()) for k in range(repeats + 1)]
    problem.solve({"a": funcs[0]})
    times = []
    for f in funcs[1:]:
        t0 = time.perf_counter()
        problem.solve({"a": f})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
