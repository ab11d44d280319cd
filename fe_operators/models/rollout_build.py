"""Building rollout surrogates from a time-dependent problem (the Firedrake side of :mod:`fe_operators.models.rollout`).

* :func:`state_layout` — the :class:`~fe_operators.models.rollout.StateLayout` of a
  state space (plain or mixed) and its Dirichlet DOFs;
* :func:`rollout_context` — the mesh context of the increment network: the nodes of the
  state's highest-degree element, ``C`` state channels, the state's Dirichlet conditions
  on those nodes with zero data (the increment vanishes there), the mesh hierarchy for
  multigrid processors;
* :func:`rollout_spon_for_problem` — a :class:`~fe_operators.models.rollout.RolloutSPON`
  for a :class:`~fe_operators.problems.timedep.TimeDependentProblem` in one call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem import interpolation_matrix
from fe_operators.models.build import _scalar_element, _scalar_space, check_processor_size, context_from_spaces, same_nodes
from fe_operators.models.context import MeshContext
from fe_operators.models.processors.base import processor_class, processor_options
from fe_operators.models.rollout import RolloutSPON, StateLayout
from fe_operators.models.spon import SPON

__all__ = ["state_subspaces", "dirichlet_mask", "state_layout", "rollout_context", "rollout_spon_for_problem"]


def state_subspaces(W: fd.FunctionSpace) -> list[fd.FunctionSpace]:
    """The (collapsed) sub-spaces of a state space in the order of ``state_to_array``: ``[W]`` unless mixed."""
    return [s.collapse() for s in W.subspaces] if len(W) > 1 else [W]


def _offsets(subs: Sequence[fd.FunctionSpace]) -> list[int]:
    sizes = [fd.Function(V).dat.data_ro.size for V in subs]
    return [int(v) for v in np.concatenate([[0], np.cumsum(sizes)[:-1]])]


def _bc_target(bc: fd.DirichletBC) -> tuple[int, int | None]:
    """(sub-space index in the state, component or None) of a condition on a state space."""
    fs = bc.function_space()
    component = fs.component
    base = fs.parent if component is not None and fs.parent is not None else fs
    index = base.index if base.index is not None else 0
    return int(index), (None if component is None else int(component))


def dirichlet_mask(W: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC]) -> np.ndarray:
    """``(n_dofs,)`` bool: the flat DOFs (``state_to_array`` order) the conditions ``bcs`` on ``W`` set."""
    subs = state_subspaces(W)
    offsets = _offsets(subs)
    mask = np.zeros(sum(fd.Function(V).dat.data_ro.size for V in subs), dtype=bool)
    for bc in bcs:
        i, comp = _bc_target(bc)
        ncomp = int(subs[i].block_size)
        nodes = np.asarray(bc.nodes, dtype=np.int64)
        comps = np.arange(ncomp) if comp is None else np.array([comp])
        mask[offsets[i] + (nodes[:, None] * ncomp + comps[None, :]).reshape(-1)] = True
    return mask


def _coo(A: sp.spmatrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    A = sp.coo_matrix(A)
    keep = A.data != 0
    return (torch.from_numpy(A.row[keep].astype(np.int64)), torch.from_numpy(A.col[keep].astype(np.int64)),
            torch.from_numpy(A.data[keep].astype(np.float64)))


def _node_space(W: fd.FunctionSpace) -> fd.FunctionSpace:
    """The scalar space of the highest-degree element of the state's sub-spaces."""
    subs = state_subspaces(W)
    degrees = [_scalar_element(V).degree() for V in subs]
    degrees = [d if isinstance(d, int) else max(d) for d in degrees]
    return _scalar_space(subs[int(np.argmax(degrees))])


def state_layout(W: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC] = (),
                 diagnostic: Sequence[int] = (), read_diagnostic: bool = False) -> StateLayout:
    """The :class:`StateLayout` of states on ``W`` with Dirichlet conditions ``bcs`` (on ``W`` or its sub-spaces).

    ``diagnostic``: indices of the sub-spaces that are predicted rather than evolved
    (:attr:`TimeDependentProblem.diagnostic_fields
    <fe_operators.problems.timedep.TimeDependentProblem.diagnostic_fields>`);
    ``read_diagnostic``: whether the network still reads them (their values are predicted,
    not integrated, either way).

    Raises
    ------
    UnsupportedSpaceError
        Sub-spaces on different meshes.
    ValueError
        A diagnostic index out of range, or every sub-space diagnostic.
    """
    subs = state_subspaces(W)
    diagnostic = {int(i) for i in diagnostic}
    if any(not 0 <= i < len(subs) for i in diagnostic):
        raise ValueError(f"diagnostic fields {sorted(diagnostic)} out of range for a state of {len(subs)} sub-spaces")
    if len({V.mesh().unique() for V in subs}) != 1:
        raise UnsupportedSpaceError("the sub-spaces of a state must live on one mesh")
    Vn = _node_space(W)
    n = Vn.dof_count
    fields, maps, channel = [], [], 0
    for i, (V, offset) in enumerate(zip(subs, _offsets(subs))):
        mapped = not same_nodes(V, Vn)
        S = _scalar_space(V)
        fields.append(dict(offset=offset, n_nodes=S.dof_count, ncomp=int(V.block_size), channel=channel,
                           mapped=mapped, diagnostic=i in diagnostic, read=i not in diagnostic or read_diagnostic))
        maps.append({"embed": _coo(interpolation_matrix(S, Vn)), "extract": _coo(interpolation_matrix(Vn, S))}
                    if mapped else None)
        channel += int(V.block_size)
    return StateLayout(fields, n, torch.from_numpy(dirichlet_mask(W, bcs)), maps)


def _channel_space(Vn: fd.FunctionSpace, channels: int) -> fd.FunctionSpace:
    if channels == 1:
        return Vn
    return fd.VectorFunctionSpace(Vn.mesh(), Vn.ufl_element(), dim=channels)


def rollout_context(W: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC], n_params: int, *,
                    hierarchy: bool = False, coarsest_nodes: int = 0, mesh_spec: str | None = None,
                    levels: str = "geometric", diagnostic: Sequence[int] = (),
                    read_diagnostic: bool = False) -> MeshContext:
    """The mesh context of a rollout's increment network (see the module docstring).

    The conditions on sub-spaces on the network's nodes become zero conditions on the
    matching channels; conditions on interpolated sub-spaces (none in the families that
    ship) are left to the exact step (:meth:`RolloutSPON.step`).  The ``state`` input has
    the channels the network reads (``diagnostic`` sub-spaces are outputs, and inputs only
    with ``read_diagnostic``).
    ``hierarchy`` and the rest: as :func:`fe_operators.models.build.context_from_spaces`.
    """
    layout = state_layout(W, bcs, diagnostic, read_diagnostic)
    Vn = _node_space(W)
    out = _channel_space(Vn, layout.channels)
    node_bcs = []
    for bc in bcs:
        i, comp = _bc_target(bc)
        f = layout.fields[i]
        if f["mapped"]:
            continue
        for c in ([comp] if comp is not None else range(f["ncomp"])):
            target = out if layout.channels == 1 else out.sub(f["channel"] + c)
            node_bcs.append(fd.DirichletBC(target, 0.0, bc.sub_domain))
    inputs = {"state": _channel_space(Vn, layout.n_inputs), "params": _channel_space(Vn, n_params)}
    ctx = context_from_spaces(inputs, out, node_bcs, hierarchy=hierarchy, coarsest_nodes=coarsest_nodes,
                              mesh_spec=mesh_spec, levels=levels)
    # the channels of unmapped fields must be constrained exactly where the state is
    expected = layout.to_nodes(layout.mask.to(torch.float64)[None])[0] > 0
    unmapped = torch.zeros(layout.channels, dtype=torch.bool)
    for f in layout.fields:
        if not f["mapped"]:
            unmapped[f["channel"]:f["channel"] + f["ncomp"]] = True
    if not torch.equal(ctx.mask[:, unmapped], expected[:, unmapped]):
        raise SpaceMismatchError("the Dirichlet conditions on the network's nodes do not match the state's "
                                 "(conditions given by node lists rather than boundary markers are not supported)")
    return ctx


def rollout_spon_for_problem(problem: Any, processor: str = "gnn", *, params: Mapping[str, float] | None = None,
                             noise_std: float = 0.0, dtype: torch.dtype = torch.float32,
                             mesh_spec: str | None = None, weight_copies: int = 1,
                             diagnostic: Sequence[int] = (), read_diagnostic: bool = False,
                             **options: Any) -> RolloutSPON:
    """A :class:`RolloutSPON` for a time-dependent problem: its state space, parameters and Dirichlet DOFs.

    Parameters
    ----------
    problem
        A :class:`~fe_operators.problems.timedep.TimeDependentProblem`.
    processor
        A registered processor name (``"gnn"``, ``"mlp"``, ``"multigrid"``, ``"hierarchical"``, …).
    params
        Parameters whose ``output_bcs`` give the Dirichlet DOFs (their values do not
        matter, the DOFs must not depend on them); default: drawn with seed 0.
    noise_std
        Training noise (see :class:`RolloutSPON`).
    dtype
        Of the weights (states stay float64).
    mesh_spec
        The spec the mesh was loaded from (multigrid processors on built-in meshes).
    weight_copies
        Copies of the weights that must fit in memory (4 to train with Adam).
    diagnostic
        Sub-spaces of the state predicted rather than evolved (not inputs of the network),
        e.g. ``problem.diagnostic_fields`` (the pressure of Navier–Stokes); default ``()``:
        every field evolved and read.  Measured on the cylinder bench (2026-12-07, one seed,
        420 s, ``--spon-diagnostic-pressure``): the predicted pressure no longer drifts, but
        the velocity rollout is worse without the pressure as an input (81.5 % time-averaged
        against 34.3 % with the Leray projection at every step; 52.2 % with
        ``read_diagnostic``): the pressure carries the non-local (elliptic) part of the
        dynamics that the network would otherwise have to compute from the velocity, and as
        an increment it is the more accurate output.
    read_diagnostic
        Whether the network still reads the diagnostic fields (predicted, not integrated).
    **options
        The processor's options.

    Examples
    --------
    >>> problem = HeatEquation(fd.UnitSquareMesh(8, 8))              # doctest: +SKIP
    >>> model = rollout_spon_for_problem(problem, "gnn", width=32, depth=3)
    >>> model.fit_normalizers(states, params)
    >>> traj = model.rollout(s0, p, n_steps=50)        # (batch, 51, n_dofs), exact Dirichlet data
    """
    opts = processor_options(processor, options)
    cls = processor_class(processor)
    params = problem.sample_parameters(np.random.default_rng(0)) if params is None else params
    bcs = problem.output_bcs(problem.check_parameters(params))
    W = problem.state_space
    diagnostic = tuple(int(i) for i in diagnostic)
    layout = state_layout(W, bcs, diagnostic, read_diagnostic)
    names = tuple(problem.parameter_names)
    ctx = rollout_context(W, bcs, len(names), mesh_spec=mesh_spec, diagnostic=diagnostic,
                          read_diagnostic=read_diagnostic,
                          **cls.context_options(dataclasses.asdict(opts)))
    inputs = [("state", layout.n_inputs), ("params", len(names))]
    check_processor_size(processor, ctx, layout.n_inputs + len(names), opts, dtype=dtype, copies=weight_copies)
    spon = SPON.from_context(ctx, inputs, processor, output_scalar=False, **options)
    return RolloutSPON(spon.to(dtype), layout, names, noise_std=noise_std)
