"""Firedrake Functions ↔ batched torch DOF tensors.

The public layout of a batch of functions on a space V (docs/design.md §2.1) is

* ``(batch, n_nodes)`` for scalar spaces,
* ``(batch, n_nodes, ncomp)`` for vector and tensor spaces (tensor values flattened
  row-major, as Firedrake stores them).

Conversions copy by default, because a view of ``dat.data`` would change under autograd's
feet when Firedrake writes the Function.  :func:`function_view` gives a shared-memory view
of one Function for the rare cases that want it.  Tensors on a CUDA device are moved
through the host.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.fem.spaces import check_supported

__all__ = ["functions_to_tensor", "tensor_to_functions", "function_view", "dof_shape"]

_FLOATS = (torch.float32, torch.float64)


def dof_shape(V: fd.FunctionSpace) -> tuple[int, ...]:
    """Shape of one function of ``V`` in the DOF-tensor layout.

    ``(n_nodes,)`` for scalar spaces, ``(n_nodes, ncomp)`` otherwise.
    """
    n = V.dof_dset.size
    return (n,) if V.value_shape == () else (n, V.block_size)


def functions_to_tensor(
    functions: fd.Function | Iterable[fd.Function],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Stack Functions of one space into a batched DOF tensor (a copy).

    Parameters
    ----------
    functions
        Functions on one function space, or a single Function (a batch of one).
    dtype
        ``torch.float64`` (default, exact) or ``torch.float32``.
    device
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        Shape ``(batch, n_nodes)`` or ``(batch, n_nodes, ncomp)``.

    Raises
    ------
    SpaceMismatchError
        The Functions do not all live on the same space.
    """
    funcs = [functions] if isinstance(functions, fd.Function) else list(functions)
    if not funcs:
        raise ValueError("expected at least one Function, got none")
    if dtype not in _FLOATS:
        raise TypeError(f"expected dtype torch.float32 or torch.float64, got {dtype}")
    V = funcs[0].function_space()
    check_supported(V)
    for i, f in enumerate(funcs):
        if not isinstance(f, fd.Function):
            raise TypeError(f"expected firedrake.Function at position {i}, got {type(f).__name__}")
        if f.function_space() != V:
            raise SpaceMismatchError(
                f"all Functions must share one space; Function {i} lives on "
                f"{f.function_space().ufl_element()} but Function 0 on {V.ufl_element()}"
            )
    shape = dof_shape(V)
    out = np.empty((len(funcs),) + shape, dtype=np.float64)
    for i, f in enumerate(funcs):  # a loop over the batch, not over DOFs
        out[i] = f.dat.data_ro.reshape(shape)
    t = torch.from_numpy(out)
    if dtype != torch.float64 or device is not None:
        t = t.to(device=device, dtype=dtype)
    return t


def _check_tensor(t: torch.Tensor, V: fd.FunctionSpace) -> torch.Tensor:
    """Return ``t`` as a batched tensor of the layout of ``V`` or raise a clear error."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"expected a float32 or float64 tensor, got {t.dtype}")
    shape = dof_shape(V)
    if tuple(t.shape[1:]) != shape:
        if tuple(t.shape) == shape:
            raise SpaceMismatchError(
                f"expected a batched tensor of shape (batch, {', '.join(map(str, shape))}), "
                f"got {tuple(t.shape)}; add a batch axis with t.unsqueeze(0)"
            )
        raise SpaceMismatchError(
            f"tensor of shape {tuple(t.shape)} does not match the space "
            f"{V.ufl_element()} whose DOF layout is (batch, {', '.join(map(str, shape))})"
        )
    return t


def tensor_to_functions(
    tensor: torch.Tensor,
    V: fd.FunctionSpace,
    *,
    out: Sequence[fd.Function] | None = None,
) -> list[fd.Function]:
    """Write a batched DOF tensor into Functions on ``V`` (a copy).

    Parameters
    ----------
    tensor
        Shape ``(batch, n_nodes)`` or ``(batch, n_nodes, ncomp)``, float32 or float64,
        on any device (CUDA tensors are copied through the host).  It is detached; use
        :mod:`firedrake.ml.pytorch` for gradients through Firedrake.
    V
        The target space.
    out
        Optional Functions on ``V`` to write into (one per sample); new ones otherwise.

    Returns
    -------
    list of firedrake.Function
        One Function per sample, values in float64.
    """
    check_supported(V)
    t = _check_tensor(tensor, V)
    arr = t.detach().to(device="cpu", dtype=torch.float64).numpy()
    dat_shape = V.dof_dset.size if V.value_shape == () else (V.dof_dset.size, *V.value_shape)
    if out is None:
        # Passing the values at construction spares Firedrake's zero-fill pass.
        return [fd.Function(V, val=np.array(a.reshape(dat_shape), dtype=np.float64)) for a in arr]
    out = list(out)
    if len(out) != arr.shape[0]:
        raise SpaceMismatchError(f"expected {arr.shape[0]} output Functions, got {len(out)}")
    for i, (f, a) in enumerate(zip(out, arr)):
        if f.function_space() != V:
            raise SpaceMismatchError(f"output Function {i} is not on the target space")
        f.dat.data_wo[...] = a.reshape(dat_shape)
    return out


def function_view(f: fd.Function) -> torch.Tensor:
    """A float64 CPU tensor sharing memory with ``f``'s DOF values (no batch axis).

    Writes through the tensor change ``f`` and vice versa.  Only for code that knows no
    autograd graph holds the tensor while Firedrake writes ``f``; prefer
    :func:`functions_to_tensor`.

    Returns
    -------
    torch.Tensor
        Shape ``(n_nodes,)`` or ``(n_nodes, ncomp)``.
    """
    V = f.function_space()
    check_supported(V)
    return torch.from_numpy(f.dat.data.reshape(dof_shape(V)))
