"""What the benchmarks share: the machine report, load warnings, ratio lines, timing, cost
counts, and the models' data, timed training and evaluation.

Every ``make bench-*`` script prints :func:`machine_summary` first and its results as
``ratio <name> <value>`` lines (:func:`print_ratios`); wall-clock comparisons warn when
the machine is loaded (:func:`check_load`). ``bench-spon`` and ``bench-mgno`` train every
model for the same wall-clock budget on the Darcy files of :func:`mesh_dataset`, with a
cosine schedule that ends with the budget and the best validation weights kept:

* our models (SPONs) through the product, :class:`fe_operators.train.Trainer`
  (:func:`run_spon`: ``scheduler.length: time_budget``, ``restore_best``), in a run folder
  whose ``best.pt`` later stages can load (:func:`load_spon`);
* the pinned baselines (neuralop's FNO; ``mgno_grid``'s MgNO) with a plain loop,
  :func:`train_timed`, on the same budget.

They are measured with :func:`evaluate` (batched inference, timed by
:func:`timed_predict`) and :func:`macs_per_sample` (multiply-adds of one forward pass).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["machine_summary", "check_load", "median_time", "print_ratios", "timed_predict", "MacCounter",
           "macs_per_sample", "DofSPON", "n_params", "evaluate", "cosine_schedule", "train_timed", "val_fn",
           "mesh_dataset", "dataset", "start_training_bench", "run_spon", "load_spon", "pinned_fno",
           "train_grid_fno", "run_fno", "transfer_floor", "fe_solve_time"]


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


# ---------------------------------------------------------------------------------- cost counts
class MacCounter:
    """Multiply-adds of the torch operations (and the package's sparse products) run inside it.

    Counted: dense products (``mm``, ``addmm``, ``bmm``, ``baddbmm``; complex ones as 4 real),
    convolutions (output size × kernel size × input channels per group), attention
    (``scaled_dot_product_attention``: ``L·S·(E + Ev)`` per batch and head), sparse
    products (one per stored entry and column: torch CSR/COO ``mm`` and
    :func:`fe_operators.sparse.spmm`'s CPU kernel, which runs in scipy), FFTs (an estimate:
    ``2 N log2 n`` for ``N`` values transformed along dimensions of total length ``n``)
    and scatter-adds (``index_add``, ``scatter_add``, ``scatter_reduce``: one per source
    entry). Element-wise operations, normalisations and activations are not counted.

    Examples
    --------
    >>> with MacCounter() as count:                    # doctest: +SKIP
    ...     model(x)
    >>> count.total
    """

    _DENSE = ("mm", "addmm", "bmm", "baddbmm")
    _FFT = ("_fft_r2c", "_fft_c2r", "_fft_c2c")
    _SCATTER = ("index_add", "index_add_", "scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_",
                "index_reduce", "index_reduce_")
    _ATTENTION = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                  "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                  "_scaled_dot_product_attention_math", "scaled_dot_product_attention")

    def __init__(self) -> None:
        self.total = 0
        self._mode: Any = None
        self._saved: Any = None

    @staticmethod
    def _sparse_nnz(t: torch.Tensor) -> int | None:
        if t.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
            return int(t.values().numel())
        if t.layout == torch.sparse_coo:
            return int(t._nnz())
        return None

    def count(self, func: Any, args: tuple, out: Any) -> None:
        name = func._overloadpacket.__name__
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name in self._DENSE:
            a, b = (tensors[-2], tensors[-1])
            nnz_a, nnz_b = self._sparse_nnz(a), self._sparse_nnz(b)
            if nnz_a is not None:
                self.total += nnz_a * b.shape[-1]
            elif nnz_b is not None:
                self.total += nnz_b * a.shape[0]
            else:
                k = a.shape[-1]
                self.total += out.numel() * k * (4 if out.is_complex() else 1)
        elif name == "convolution":
            weight = tensors[1]
            self.total += out.numel() * weight[0].numel()
        elif name in self._ATTENTION:
            q, k, v = tensors[:3]
            self.total += q.numel() // q.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        elif name in self._FFT:
            x, dims = tensors[0], args[1]
            n = math.prod(x.shape[d] if name != "_fft_c2r" else out.shape[d] for d in dims)
            self.total += int(2 * max(x.numel(), out.numel()) * math.log2(max(n, 2)))
        elif name in self._SCATTER:
            self.total += tensors[-1].numel()

    def __enter__(self) -> "MacCounter":
        from torch.utils._python_dispatch import TorchDispatchMode

        spmm_module = importlib.import_module("fe_operators.sparse.spmm")  # the package exports the function
        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                out = func(*args, **(kwargs or {}))
                counter.count(func, args, out)
                return out

        product = self._saved = spmm_module._product

        def counted(A: Any, x: torch.Tensor) -> torch.Tensor:  # the scipy kernel: invisible to torch
            if x.device.type == "cpu":
                counter.total += int(A.values.numel()) * int(x.shape[1])
            return product(A, x)

        spmm_module._product = counted
        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        importlib.import_module("fe_operators.sparse.spmm")._product = self._saved


def macs_per_sample(predict: Callable[[Any], Any], a: Any, batch: int = 2) -> float:
    """Multiply-adds of one forward pass per sample (:class:`MacCounter`, a batch of ``batch``, no autograd)."""
    x = a[:batch]
    with torch.no_grad():
        predict(x)  # warm-up: one-off casts and caches are not the model's arithmetic
        with MacCounter() as count:
            predict(x)
    return count.total / x.shape[0]


# ---------------------------------------------------------------------------------- timed training
class DofSPON(torch.nn.Module):
    """A trained :class:`~fe_operators.models.NormalizedModel` around a SPON, on DOF tensors of one scalar input.

    ``forward(a, context=None)``: ``a`` ``(batch, n_dofs)`` physical, as the benchmarks
    hold their inputs; the model sees them as the dataset's ``(batch, n_dofs, 1)`` tensors
    in the weights' dtype (its normalizers encode them, and decode the output, whose
    Dirichlet values are the exact physical data). Output ``(batch, n_dofs)`` float64.

    Attributes
    ----------
    model
        The NormalizedModel the Trainer trained.
    spon
        Its network, the SPON (for :func:`~fe_operators.models.build.context_for_model`).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def spon(self) -> torch.nn.Module:
        return self.model.network

    def forward(self, a: torch.Tensor, context: Any = None) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        x = a.unsqueeze(-1).to(dtype)
        return self.model(x) if context is None else self.model(x, context=context)


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


def start_training_bench(args: argparse.Namespace, need_neuralop: bool = True) -> str:
    """The start of ``bench-spon`` and ``bench-mgno``; returns neuralop's version.

    neuralop is installed if missing (unless ``--no-install``; not at all without
    ``need_neuralop``: the version is then ``"not used"``), Firedrake imported without
    this script's flags (Firedrake hands ``sys.argv`` to PETSc), the package's "beta"
    warning of sparse CSR tensors silenced (after those imports: one of them resets the
    filters), and torch set to ``--threads`` threads.
    """
    from fno_grid import ensure_neuralop

    version = ensure_neuralop(install=not args.no_install) if need_neuralop else "not used"
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
def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def run_spon(data: dict[str, Any], processor: str, options: dict[str, Any], *, budget: float, lr: float,
             args: argparse.Namespace, label: str, batch: int | None = None, loss: str = "rel_l2",
             weight_decay: float | None = None, run_root: str | os.PathLike | None = None,
             device: str | None = None) -> tuple[DofSPON, dict[str, Any]]:
    """A SPON for ``data``'s problem, trained through :class:`fe_operators.train.Trainer` for ``budget`` seconds.

    The product's path: the dataset file's train and validation rows as
    :class:`~fe_operators.data.FEDataset` (float32, in memory), global unit-Gaussian
    normalizers fitted on the train split (one mean and std for the input and for the
    output: they do not depend on the mesh, so the model transfers; SPON's Dirichlet
    values stay exact), AdamW with a cosine decay to 0 whose length is the budget
    (``scheduler.length: time_budget``), the training ``loss`` (``"rel_l2"`` or
    ``"rel_h1"``, the file's FE norms, or ``"scaled_l2"``: the product's ``train.loss`` of that name,
    :func:`fe_operators.train.losses.loss_for_file`), ``best.pt``
    picked on validation relative L2
    and restored at the end (``restore_best``). The run folder is
    ``<run_root>/<label>`` (``run_root`` default ``<args.out>/runs``), emptied first.

    Returns the model (a :class:`DofSPON`) and a record: ``epochs`` (steps / steps per
    epoch), ``steps``, ``train_s`` (training and validation seconds), ``val_rel_l2`` and
    ``best_epoch`` of the restored weights, ``params``, ``run_dir``.
    """
    from fe_operators.data import FEDataset
    from fe_operators.models import spon_for_problem
    from fe_operators.models.normalized import NormalizedModel
    from fe_operators.train import SchedulerSection, Trainer, TrainSection
    from fe_operators.train.losses import loss_for_file

    file = data["file"]
    n_train, n_val = (data["split"][k][0].shape[0] for k in ("train", "val"))
    train = FEDataset(file.path, range(n_train), preload=True)  # the rows mesh_dataset split off, in order
    val = FEDataset(file.path, range(n_train, n_train + n_val), preload=True)
    x_norm, y_norm = train.fit_normalizers(per="global")
    torch.manual_seed(args.seed)
    spon = spon_for_problem(data["problem"], processor, mesh_spec=data.get("spec"), weight_copies=4, **options)
    metrics = {name: loss_for_file(file, name, train) for name in dict.fromkeys(["rel_l2", loss])}
    settings = TrainSection(
        epochs=10**9, batch_size=batch or args.batch, lr=lr,
        weight_decay=args.weight_decay if weight_decay is None else weight_decay,
        scheduler=SchedulerSection(name="cosine", length="time_budget", min_lr=0.0), seed=args.seed,
        device=device or getattr(args, "device", "cpu"), time_budget=budget, progress=False, restore_best=True)
    run_dir = Path(run_root if run_root is not None else Path(args.out) / "runs") / _slug(label)
    if getattr(args, "reuse_runs", False) and (run_dir / "best.pt").exists():
        return reused_spon(run_dir, label)
    shutil.rmtree(run_dir, ignore_errors=True)  # a benchmark trains anew
    trainer = Trainer(NormalizedModel(spon, x_norm, y_norm), metrics[loss], train, val, run_dir=run_dir,
                      settings=settings, metrics=metrics, select="rel_l2", spaces=file.space_dicts,
                      run_info={"benchmark": label, "processor": processor, "options": options})
    loss_text = "scaled L2 (fem.norms.ScaledLoss)" if loss == "scaled_l2" else f"relative {loss[4:].upper()}"
    print(f"  {label}: Trainer, {processor} processor, lr {lr:g}, batch {settings.batch_size}, {loss_text} "
          f"loss, cosine over {budget:.0f} s, run folder {run_dir}", flush=True)
    result = trainer.fit()
    steps_per_epoch = trainer.steps_per_epoch
    epochs = result.step / steps_per_epoch
    best = result.restored or result.best
    print(f"  {label}: {epochs:.2f} epochs ({result.step} steps) in {trainer.state.elapsed:.0f} s; best val rel L2 "
          f"{best['value'] if best['value'] is not None else math.nan:.4f} after epoch {best['epoch']}", flush=True)
    model = DofSPON(trainer.model)
    model.eval()
    info = {"epochs": epochs, "steps": result.step, "train_s": trainer.state.elapsed,
            "val_rel_l2": best["value"], "best_epoch": best["epoch"], "params": n_params(model),
            "run_dir": str(run_dir)}
    return model, info


def reused_spon(run_dir: Path, label: str) -> tuple[DofSPON, dict[str, Any]]:
    """The restored model of an earlier :func:`run_spon` in ``run_dir`` and its record, from
    ``best.pt`` and the Trainer's ``metrics.json`` (``--reuse-runs``: re-evaluate without training)."""
    model = load_spon(run_dir / "best.pt")
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    rows, best = metrics["epochs"], metrics["best"]
    steps_per_epoch = rows[0]["step"] / rows[0]["epoch"]
    info = {"epochs": rows[-1]["step"] / steps_per_epoch, "steps": rows[-1]["step"], "train_s": rows[-1]["elapsed"],
            "val_rel_l2": best["value"], "best_epoch": best["epoch"], "params": n_params(model),
            "run_dir": str(run_dir)}
    print(f"  {label}: reused {run_dir / 'best.pt'} ({info['epochs']:.2f} epochs in {info['train_s']:.0f} s, best "
          f"val rel L2 {best['value']:.4f} after epoch {best['epoch']}); not trained again", flush=True)
    return model, info


def load_spon(path: str | os.PathLike, device: str = "cpu") -> DofSPON:
    """A :class:`DofSPON` from a checkpoint :func:`run_spon` wrote (e.g. ``<run_dir>/best.pt``)."""
    from fe_operators.train import load_model

    model = DofSPON(load_model(path, device=device).model)
    model.eval()
    return model


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
