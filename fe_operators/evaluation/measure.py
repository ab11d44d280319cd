"""Predictions on the evaluated samples, inference timing, and the errors in FE norms."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch

from fe_operators.data import FEDataset
from fe_operators.errors import NonFiniteError, SpaceMismatchError
from fe_operators.models import SPON

__all__ = ["predict_rows", "measure"]


def _take(x: Any, part: slice) -> Any:
    return x[part] if isinstance(x, torch.Tensor) else {k: v[part] for k, v in x.items()}


def _to(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return {k: v.to(device=device, dtype=dtype) for k, v in x.items()}


def _predict_all(forward: Any, x: Any, n: int, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        parts = [forward(_take(x, slice(s, min(s + batch_size, n)))) for s in range(0, n, batch_size)]
    return torch.cat(parts).to(torch.float64).cpu()


def _time_per_sample(forward: Any, x: Any, n: int, batch_size: int, min_seconds: float = 0.3,
                     max_repeats: int = 20) -> float:
    """Milliseconds per sample of batched inference after a warm-up batch."""
    _predict_all(forward, _take(x, slice(0, min(batch_size, n))), min(batch_size, n), batch_size)  # warm-up
    repeats, elapsed = 0, 0.0
    while repeats < max_repeats and (repeats == 0 or elapsed < min_seconds):
        start = time.perf_counter()
        _predict_all(forward, x, n, batch_size)
        elapsed += time.perf_counter() - start
        repeats += 1
    return 1000.0 * elapsed / (repeats * n)


def predict_rows(loaded: Any, file: Any, rows: np.ndarray, context: Any, batch_size: int,
             device: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Predictions and truths ``(n, n_nodes[, ncomp])`` float64 on the CPU, and ms per sample."""
    dataset = FEDataset(file.path, rows, dtype=torch.float64, preload=True)
    x, y = dataset.raw(np.arange(len(dataset)))
    n = len(dataset)
    network = loaded.network
    dtype = torch.float64 if isinstance(network, SPON) else next(network.parameters()).dtype
    x = _to(x, torch.device(device), dtype)
    model = loaded.model
    forward = model if context is None else functools.partial(model, context=context)
    model.eval()
    pred = _predict_all(forward, x, n, batch_size)
    if pred.shape != y.shape:
        raise SpaceMismatchError(f"the model predicts DOF tensors of shape {tuple(pred.shape)}, the dataset holds "
                                 f"{tuple(y.shape)}")
    bad = np.flatnonzero(~torch.isfinite(pred.reshape(n, -1)).all(dim=1).numpy())
    if bad.size:
        shown = ", ".join(str(int(r)) for r in rows[bad[:10]]) + (", ..." if bad.size > 10 else "")
        raise NonFiniteError(f"the model predicts NaN or infinite values for {bad.size} of {n} samples (file rows "
                             f"{shown}); the checkpoint {loaded.path} is broken or its training diverged: try "
                             "another checkpoint (--checkpoint best|last) or retrain with a lower train.lr")
    return pred, y, _time_per_sample(forward, x, n, batch_size)


def measure(problem: Any, pred: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Per-sample relative L2 and H1 errors, the max boundary error, and notes."""
    import firedrake as fd

    from fe_operators.fem import DirichletDofs, FENorm

    notes: list[str] = []
    V = problem.output_space
    templates = {n: fd.Function(W) for n, W in problem.input_spaces.items()}
    mask = DirichletDofs(V, problem.output_bcs(templates)).mask
    rel_l2 = FENorm.l2(V).relative(pred, y).numpy()
    rel_h1 = FENorm.h1(V).relative(pred, y).numpy()
    m = mask.reshape(y.shape[1:])
    if bool(m.any()):
        err = float((pred - y)[:, m].abs().max())
        scale = float(y[:, m].abs().max()) or float(y.abs().max()) or 1.0
        boundary = err / scale
    else:
        boundary = 0.0
        notes.append("the output has no Dirichlet DOFs; the boundary error is 0 by definition")
    return rel_l2, rel_h1, boundary, notes
