"""Dirichlet data as an affine map of a problem's inputs.

The Dirichlet conditions of a problem's output may depend on its inputs: Poisson's
``u = g``, Stokes' inflow ``u = d g``.  When the data are affine in the inputs, the
lifting (boundary data on the constrained DOFs, zero elsewhere) is, on the flat
(interleaved) DOFs of the output space,

.. math:: g_h(x) = g_0 + \\sum_k L_k x_k,

with ``g_0`` the lifting for zero inputs and ``L_k`` a sparse float64 matrix from the
flat DOFs of input ``k`` whose only non-empty rows are constrained DOFs.  A model adds
this in float64 and writes the network's free values around it, so its boundary values
are the problem's own data for every input.

:func:`dirichlet_map` derives the ``L_k`` from UFL, for conditions written as
``DirichletBC(V, expr, marker)`` with ``expr`` an input Function or a UFL expression of
the inputs: ``expr`` is differentiated with respect to input ``k`` in the direction of a
``TrialFunction`` of its space, and Firedrake's interpolation assembly of that
derivative into ``V`` gives the matrix (the rows of the DOFs the condition sets; where
several conditions constrain a DOF, the last one wins, as ``DirichletBC.apply`` in
order).  The map is then checked against the conditions for random inputs.  Each entry
is the coefficient Firedrake multiplies the input by when it evaluates the data, so
where each constrained DOF reads one input DOF (Poisson's ``g``, Stokes' ``d g``) the
map reproduces the data bit for bit; otherwise to the round-off of a sum's order.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping

import numpy as np
import scipy.sparse as sp
import ufl
from ufl.algorithms import expand_derivatives, extract_coefficients

import firedrake as fd

from fe_operators.errors import BoundaryDataError
from fe_operators.fem.bcs import DirichletDofs, _as_list, _bc_flat_dofs
from fe_operators.sparse.petsc import petsc_to_scipy

__all__ = ["DirichletMap", "dirichlet_map", "BCs"]

#: Dirichlet conditions: none, one, several, or a function of the named inputs returning them
BCs = fd.DirichletBC | Iterable[fd.DirichletBC] | None | Callable[[Mapping[str, fd.Function]], object]

#: relative tolerance of the check against the conditions (round-off of the interpolation)
CHECK_RTOL = 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class DirichletMap:
    """The output's Dirichlet data as an affine map of the inputs, ``g_h = g_0 + Σ_k L_k x_k``.

    Attributes
    ----------
    dofs
        The constrained/free split (the same for every input) and the conditions for
        zero inputs (``dofs.bcs``).
    constant
        ``g_0``: ``(n_dofs,)`` float64, the lifting for zero inputs (flat, interleaved).
    maps
        Input name -> ``L_k``, scipy CSR float64 of shape ``(n_dofs, n_dofs_k)`` (flat
        interleaved DOFs of the input's space), non-empty rows only on constrained DOFs;
        only the inputs the data depend on.

    Shapes
    ------
    :meth:`lifting`: inputs ``name -> (n_dofs_k,)`` (or ``(n_nodes_k, ncomp_k)``, or a
    Function); output ``(n_dofs,)`` float64.
    """

    dofs: DirichletDofs
    constant: np.ndarray
    maps: Mapping[str, sp.csr_matrix]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the inputs the boundary data depend on (empty: fixed data)."""
        return tuple(self.maps)

    def lifting(self, inputs: Mapping[str, np.ndarray | fd.Function]) -> np.ndarray:
        """The lifting for these inputs (those the data do not depend on may be omitted)."""
        g = self.constant.copy()
        for name, L in self.maps.items():
            x = inputs[name]
            x = x.dat.data_ro if isinstance(x, fd.Function) else x
            g += L @ np.asarray(x, dtype=np.float64).reshape(-1)
        return g


def _bc_value(bc: fd.DirichletBC) -> ufl.core.expr.Expr:
    """The value a DirichletBC was given (the UFL expression, before Firedrake interpolates it)."""
    # Firedrake keeps the argument as given in ``_original_arg`` (``function_arg`` is
    # its interpolant, which no longer shows the inputs)
    g = getattr(bc, "_original_arg", bc.function_arg)
    return g if isinstance(g, ufl.core.expr.Expr) else ufl.as_ufl(g)


def _data_matrix(expr: ufl.core.expr.Expr, x: fd.Function, bc: fd.DirichletBC, V: fd.FunctionSpace,
                 name: str) -> sp.csr_matrix | None:
    """``∂expr/∂x`` interpolated into the condition's space, as ``(n_dofs of V, n_dofs of x)``."""
    W = x.function_space()
    d = expand_derivatives(ufl.derivative(expr, x, fd.TrialFunction(W)))
    if isinstance(d, ufl.classes.Zero):
        return None
    if x in extract_coefficients(d):
        raise BoundaryDataError(
            f"the Dirichlet data on boundary {bc.sub_domain} are not affine in input {name!r} "
            f"(their derivative still depends on it: {d}); SPON can lift only affine boundary data"
        )
    target = bc.function_space()
    component = getattr(target, "component", None)
    if component is not None and target.parent is not None:
        target = target.collapse()
    try:
        A = petsc_to_scipy(fd.assemble(fd.interpolate(d, target), mat_type="aij").petscmat)
    except Exception as exc:  # Firedrake says why (unsupported element, mesh, shape)
        raise BoundaryDataError(
            f"cannot assemble the derivative of the Dirichlet data on boundary {bc.sub_domain} with respect to "
            f"input {name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    if component is not None:
        ncomp = V.block_size
        nodes = np.arange(A.shape[0])
        place = sp.csr_matrix((np.ones(nodes.size), (nodes * ncomp + component, nodes)),
                              shape=(V.dof_dset.size * ncomp, A.shape[0]))
        A = place @ A
    return sp.csr_matrix(A)


def dirichlet_map(V: fd.FunctionSpace, bcs: BCs, input_spaces: Mapping[str, fd.FunctionSpace] | None = None,
                  *, check: bool = True, seed: int = 0) -> DirichletMap:
    """The Dirichlet data of conditions on ``V`` as an affine map of named inputs.

    Parameters
    ----------
    V
        The output space.
    bcs
        Fixed conditions (none, a DirichletBC or several: the map is constant), or a
        function of the inputs ``{name: Function}`` returning the conditions, such as
        :meth:`Problem.output_bcs <fe_operators.problems.Problem.output_bcs>`: it is
        called with zero Functions of ``input_spaces`` and its conditions' values
        (input Functions or UFL expressions of them) are differentiated.
    input_spaces
        The inputs' spaces by name (needed with a function ``bcs``).
    check
        Compare the map with the conditions for two random inputs (and that the
        constrained DOFs do not depend on the inputs).
    seed
        Of the random inputs of the check.

    Returns
    -------
    DirichletMap

    Raises
    ------
    BoundaryDataError
        The data are not affine in an input, or depend on the inputs through something
        other than UFL expressions of them (e.g. a Function interpolated from an input
        before it was given to the DirichletBC): the check finds the difference.

    Examples
    --------
    >>> dm = dirichlet_map(V, lambda x: fd.DirichletBC(V, x["g"], "on_boundary"), {"g": V})  # doctest: +SKIP
    >>> dm.inputs
    ('g',)
    """
    spaces = dict(input_spaces or {})
    if not callable(bcs) or isinstance(bcs, fd.DirichletBC):
        dofs = DirichletDofs(V, _as_list(bcs))
        return DirichletMap(dofs, dofs.lifting().numpy().reshape(-1), {})
    make = bcs
    templates = {name: fd.Function(W) for name, W in spaces.items()}
    bc_list = _as_list(make(templates))
    dofs = DirichletDofs(V, bc_list)
    constant = dofs.lifting().numpy().reshape(-1)
    # the condition that sets each DOF: the last one that constrains it
    owner = np.full(dofs.n_dofs, -1, dtype=np.int64)
    for b, bc in enumerate(bc_list):  # a loop over conditions (a handful), not over DOFs
        owner[_bc_flat_dofs(bc, V)] = b
    maps: dict[str, sp.csr_matrix] = {}
    for b, bc in enumerate(bc_list):
        expr = _bc_value(bc)
        present = set(extract_coefficients(expr))
        for name, x in templates.items():
            if x not in present:
                continue
            A = _data_matrix(expr, x, bc, V, name)
            if A is None:
                continue
            A = sp.diags((owner == b).astype(np.float64)) @ A  # rows this condition sets
            maps[name] = A if name not in maps else maps[name] + A
    for name in list(maps):
        maps[name] = sp.csr_matrix(maps[name])
        maps[name].eliminate_zeros()
        maps[name].sort_indices()
        if maps[name].nnz == 0:
            del maps[name]
    # channel order of the inputs
    result = DirichletMap(dofs, constant, {n: maps[n] for n in spaces if n in maps})
    if check and templates:
        _check(result, V, make, spaces, seed)
    return result


def _check(dm: DirichletMap, V: fd.FunctionSpace, make: Callable[[Mapping[str, fd.Function]], object],
           spaces: Mapping[str, fd.FunctionSpace], seed: int) -> None:
    """Raise BoundaryDataError unless ``dm`` reproduces the conditions for random inputs."""
    rng = np.random.default_rng(seed)
    for _ in range(2):
        inputs = {n: fd.Function(W) for n, W in spaces.items()}
        for x in inputs.values():
            x.dat.data_wo[...] = rng.standard_normal(x.dat.data_ro.shape)
        dofs = DirichletDofs(V, _as_list(make(inputs)))
        if not np.array_equal(dofs.constrained, dm.dofs.constrained):
            raise BoundaryDataError("the Dirichlet DOFs of the output change with the inputs; SPON needs a fixed "
                                    "constrained/free split")
        ref = dofs.lifting().numpy().reshape(-1)
        err = float(np.abs(dm.lifting(inputs) - ref).max(initial=0.0))
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        if not err <= CHECK_RTOL * scale:
            raise BoundaryDataError(
                f"the Dirichlet data depend on the inputs in a way that is not an affine UFL expression of them "
                f"(the affine map read from the conditions is off by {err:.3g} for random inputs, data of magnitude "
                f"{scale:.3g}); give DirichletBC the inputs or UFL expressions of them (not Functions "
                "computed from them), or override Problem.dirichlet_map"
            )

