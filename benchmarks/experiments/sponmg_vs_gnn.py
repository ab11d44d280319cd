"""SPON-MG (the ``hierarchical`` processor, its defaults) against SPON-GNN (its defaults) at equal training time.

What it measures: for each dataset, both processors are trained through the product
(:func:`fe_operators.train.run_training`: the Trainer, AdamW, relative-L2 loss, cosine
schedule, per-DOF normalisers, best validation epoch kept) for the same
budget (CPU or wall-clock seconds, ``--clock``), with the same batch size (the GNN's, 5, as in ``bench_spon``/``bench_mgno``)
and the same learning rate.  Each model's seconds per epoch are first timed on one
epoch, and its epoch count is set so that the cosine schedule ends at the budget (the
budget is also the Trainer's ``time_budget``, a safety net).  The best-validation
weights are then evaluated on the test split (``evaluate_run``): mean relative L2 and
H1 in the FE norms and the max boundary error.

Datasets (Darcy, ``coefficient: cg1``, 400 samples, seed 0, split 300/50/50; generated
once under ``--out``):

* ``sq32``: ``unitsquare:32`` (1089 CG1 DOFs; geometric levels);
* ``plate``: the shipped ``plate_holes`` mesh (867 CG1 DOFs; algebraic levels only);
* ``cg2part``: ``unitsquare:16`` with a CG2 output and ``u = 0`` only on markers 1, 2
  (1089 DOFs; Dirichlet data on half of the boundary).

Run (a few minutes per model and dataset on an idle core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/experiments/sponmg_vs_gnn.py --budget 90 --threads 1 \
        [--data sq32 plate cg2part] [--processors gnn hierarchical] [--before 8858dab] [--clock cpu|wall]

Extra processor options: ``--set hierarchical.width=96`` (repeatable).

Equal budgets are in CPU seconds of the training process (``--clock cpu``, torch and
numba on one thread each): the machine these numbers come from (2 cores shared with five
other engineers' jobs, load average 7-10 throughout) gave each process a quarter to half
a core, so wall-clock budgets would have measured the neighbours.  ``s/epoch`` below is
CPU seconds per epoch (validation included); relative errors are test means, in the FE
norms.  ``--budget 90``, one run per row group (the rows of a group ran side by side)::

    data     processor                          rel L2   rel H1   s/epoch  epochs
    sq32     gnn (defaults)                     0.0285   0.1329    7.36     10
    sq32     hierarchical @8858dab (before)     0.0381   0.1774    8.88     10
    sq32     + channel-wise conv, light fine    0.0305   0.1673    5.80     15
             levels (attention, min_width 8)
    sq32     width 96, depth 4, attention       0.0400   0.1834   10.34      8
    sq32     coarsest <= 100, depth 3, attn.    0.0214   0.1205    3.51     28
    sq32     spectral x2, depth 2, 8 modes      0.0175   0.1010    4.34     20
    sq32     spectral x2, depth 1, 6 modes      0.0172   0.0993    3.60     22   <- the defaults

    plate    gnn (defaults)                     0.0347   0.0819    6.24     14
    plate    hierarchical, depth 2, 8 modes     0.0251   0.0752    3.09     27
    plate    hierarchical (defaults)            0.0250   0.0751    2.71     27

    cg2part  gnn (defaults)                     0.0235   0.1389    9.01     10
    cg2part  hierarchical, depth 2, 8 modes     0.0179   0.1217    4.12     21
    cg2part  hierarchical (defaults)            0.0190   0.1213    3.94     22

(``sq32`` has a geometric hierarchy: levels 1089 and 289 nodes; ``plate``: 867 and 153
aggregated; ``cg2part``: the CG2 nodes and aggregates.)  With the defaults, against the
GNN: relative L2 0.60 / 0.72 / 0.81, relative H1 0.75 / 0.92 / 0.87, seconds per epoch
0.49 / 0.43 / 0.44 (sq32 / plate / cg2part).  The before row is the
processor of commit 8858dab loaded from git in the same process (``--before 8858dab``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"

DATASETS = {
    "sq32": ("unitsquare:32", {"coefficient": "cg1"}),
    "plate": ("plate_holes", {"coefficient": "cg1"}),
    "cg2part": ("unitsquare:16", {"coefficient": "cg1", "degree": 2, "markers": [1, 2]}),
}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def register_before(commit: str) -> str:
    """Register the hierarchical processor of ``commit`` as ``hierarchical_before`` (same process, same data)."""
    import subprocess
    import sys
    import types

    src = subprocess.run(["git", "show", f"{commit}:fe_operators/models/processors/hierarchical.py"],
                         check=True, capture_output=True, text=True).stdout
    src = src.replace('name = "hierarchical"', 'name = "hierarchical_before"')
    module = types.ModuleType("hierarchical_before")
    sys.modules[module.__name__] = module
    exec(compile(src, f"{commit}:hierarchical.py", "exec"), module.__dict__)
    return "hierarchical_before"


def run(name: str, processor: str, options: dict, args: argparse.Namespace, root: Path) -> dict:
    from fe_operators.evaluation import evaluate_run
    from fe_operators.train import config_from_dict, run_training

    data = root / f"darcy-{name}.h5"
    base = {"data": {"path": str(data), "split": [300, 50, 50], "normalize_inputs": "dof", "normalize_output": "dof"},
            "model": {"type": "spon", "processor": processor, **options},
            "train": {"batch_size": args.batch, "lr": args.lr, "weight_decay": 1e-4, "threads": args.threads,
                      "metrics": ["rel_l2", "rel_h1"], "seed": 0, "progress": False,
                      "scheduler": {"name": "cosine", "warmup_steps": 10}}}
    tag = args.tag or "-".join(f"{k}{v}" for k, v in options.items())
    out = root / f"run-{name}-{processor}{'-' + tag if tag else ''}"
    if args.epochs:
        epochs, epoch_s = args.epochs, float("nan")
    else:
        # one timed epoch sets the epoch count: the cosine schedule then ends with the budget
        probe = Path(str(out) + "-probe")
        shutil.rmtree(probe, ignore_errors=True)
        run_training(config_from_dict({**base, "train": {**base["train"], "epochs": 1}, "out": {"dir": str(probe)}}))
        epoch_s = float(json.loads((probe / "metrics.json").read_text())["epochs"][0]["epoch_time"])
        epochs = max(1, int(args.budget / epoch_s))
    shutil.rmtree(out, ignore_errors=True)
    cfg = {**base, "train": {**base["train"], "epochs": epochs}, "out": {"dir": str(out)}}
    if not args.epochs:
        cfg["train"]["time_budget"] = 1.15 * args.budget
    t0 = time.perf_counter()
    result = run_training(config_from_dict(cfg))
    train_s = time.perf_counter() - t0
    ev = evaluate_run(out, data, plots=0)
    times = [e["epoch_time"] for e in json.loads((out / "metrics.json").read_text())["epochs"]]
    row = {"data": name, "processor": processor, "rel_l2": float(ev.rel_l2.mean()), "rel_h1": float(ev.rel_h1.mean()),
           "max_bnd": float(ev.boundary_error), "infer_ms": float(ev.ms_per_sample),
           "s_per_epoch": sum(times) / len(times), "train_s": train_s, "epochs": result.epochs, "probe_epoch_s": epoch_s,
           "params": int(ev.n_params),
           "options": options}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=180.0)
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--processors", nargs="+", default=["gnn", "hierarchical"])
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="processor.key=value (JSON value)")
    p.add_argument("--out", default="out/s15")
    p.add_argument("--epochs", type=int, default=0, help="fixed epochs instead of a budget")
    p.add_argument("--before", default="", help="also train the hierarchical processor of this commit "
                   "(as processor hierarchical_before)")
    p.add_argument("--tag", default="", help="suffix of the run folders")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="the Trainer's clock: this process's CPU seconds (fair on a shared machine with "
                        "--threads 1) or wall-clock seconds")
    args = p.parse_args()
    if args.clock == "cpu":
        # epoch times and the time budget in CPU seconds of this process: on a machine shared with
        # other jobs the wall clock gives each model whatever the others leave it
        import types

        import fe_operators.train.trainer as trainer_module

        trainer_module.time = types.SimpleNamespace(**{**vars(time), "monotonic": time.process_time})
    from fe_operators.data import generate_dataset

    root = Path(args.out).absolute()
    root.mkdir(parents=True, exist_ok=True)
    extra: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        proc, opt = key.split(".", 1)
        extra.setdefault(proc, {})[opt] = _value(value)
    if args.before:
        register_before(args.before)
    rows = []
    for name in args.data:
        spec, params = DATASETS[name]
        generate_dataset("darcy", spec, 400, root / f"darcy-{name}.h5", seed=0, params=params, progress=False)
        for proc in args.processors:
            rows.append(run(name, proc, extra.get(proc, {}), args, root))
    print(f"\nclock: {args.clock}, torch/numba threads {args.threads}")
    print(f"\n{'data':<9}{'processor':<14}{'rel L2':>8}{'rel H1':>8}{'s/epoch':>9}{'epochs':>7}{'params':>9}")
    for r in rows:
        print(f"{r['data']:<9}{r['processor']:<14}{r['rel_l2']:>8.4f}{r['rel_h1']:>8.4f}{r['s_per_epoch']:>9.2f}"
              f"{r['epochs']:>7}{r['params'] or 0:>9}")


if __name__ == "__main__":
    main()
