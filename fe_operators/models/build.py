"""Building mesh contexts and SPONs from Firedrake spaces and Problems.

One of the two Firedrake-side modules of :mod:`fe_operators.models` (with
:mod:`~fe_operators.models.inference`, which imports Firedrake inside its functions);
the operators come from :mod:`fe_operators.fem`, and the torch modules of the package
(context, encoder, decoder, SPON, processors) see tensors only (docs/design.md §1, §3.4).

The processor's nodes are the DOF nodes of the output space.  Each input field is
brought onto them by a fixed sparse map between the *scalar* versions of the spaces
(applied to every component), chosen by ``method``:

* ``"interpolate"`` — Firedrake's interpolation matrix
  (:func:`fe_operators.fem.interpolation_matrix`), on one mesh or from another mesh of
  the domain;
* ``"project"`` — lumped L2 projection :math:`M_L^{-1} B`, :math:`B_{ij} = \\int
  \\phi_i \\psi_j`, :math:`(M_L)_{ii} = \\int \\phi_i` (same mesh, degree-1 targets whose
  lumped mass is positive): a local, area-weighted average, the right map from
  discontinuous inputs (Darcy's DG0 permeability) to continuous nodes, where
  interpolation would pick one of the cells around a node;
* ``"auto"`` (default) — ``"project"`` from a discontinuous space to continuous degree-1
  nodes on the same mesh, ``"interpolate"`` otherwise.

A field already on the output nodes (same mesh and scalar element) gets no map.

Boundary data that depend on the inputs (Poisson's ``u = g``, Stokes' ``u = d g``) are
stated as a sparse affine map of the inputs (:func:`fe_operators.fem.lifting.dirichlet_map`,
a Problem's :meth:`~fe_operators.problems.Problem.dirichlet_map`) and stored in the
context as its lifting maps, which SPON applies to the physical inputs in float64.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import ufl

import firedrake as fd

from fe_operators.errors import ConfigError, UnsupportedSpaceError
from fe_operators.fem import assemble_scipy, dof_graph, interpolation_matrix, node_weights
from fe_operators.fem.lifting import BCs, DirichletMap, dirichlet_map
from fe_operators.fem.spaces import check_supported
from fe_operators.limits import check_allocation
from fe_operators.models.context import MeshContext
from fe_operators.models.encoder import InputField
from fe_operators.models.processors.base import processor_class, processor_options
from fe_operators.models.spon import SPON
from fe_operators.multigrid.hierarchy import Hierarchy
from fe_operators.sparse.maps import SparseMap

__all__ = [
    "MAP_METHODS", "node_space", "same_nodes", "input_map", "input_fields", "context_from_spaces", "context_from_problem",
    "hierarchy_context", "context_for_model", "spon_for_problem", "check_processor_size",
]

#: how inputs reach the processor's nodes
MAP_METHODS = ("auto", "interpolate", "project")


def _scalar_element(V: fd.FunctionSpace) -> Any:
    elem = V.ufl_element()
    if V.value_shape != () and elem.sub_elements:
        return elem.sub_elements[0]
    return elem


def _scalar_space(V: fd.FunctionSpace) -> fd.FunctionSpace:
    return V if V.value_shape == () else fd.FunctionSpace(V.mesh(), _scalar_element(V))


def node_space(output_space: fd.FunctionSpace, value_shape: tuple[int, ...] = ()) -> fd.FunctionSpace:
    """The space of the processor's nodes with values of ``value_shape``: the output's scalar element."""
    mesh, elem = output_space.mesh(), _scalar_element(output_space)
    if value_shape == ():
        return fd.FunctionSpace(mesh, elem)
    if len(value_shape) == 1:
        return fd.VectorFunctionSpace(mesh, elem, dim=value_shape[0])
    return fd.TensorFunctionSpace(mesh, elem, shape=value_shape)


def same_nodes(V: fd.FunctionSpace, W: fd.FunctionSpace) -> bool:
    """Whether two spaces share DOF nodes (same mesh and scalar element)."""
    return V.mesh().unique() is W.mesh().unique() and _scalar_element(V) == _scalar_element(W)


def input_map(V_in: fd.FunctionSpace, output_space: fd.FunctionSpace, method: str = "auto") -> SparseMap | None:
    """The fixed map of an input space's scalar nodes onto the output space's nodes.

    Returns
    -------
    SparseMap or None
        ``(n, n_in)`` float64; None when ``V_in`` already lives on the output nodes.

    Raises
    ------
    UnsupportedSpaceError
        ``"project"`` across meshes or onto nodes without positive lumped mass.
    """
    check_supported(V_in)
    if method not in MAP_METHODS:
        raise ValueError(f"expected method in {MAP_METHODS}, got {method!r}")
    if same_nodes(V_in, output_space):
        return None
    src, dst = _scalar_space(V_in), node_space(output_space)
    same_mesh = src.mesh().unique() is dst.mesh().unique()
    if method == "auto":
        discontinuous = src.ufl_element().sobolev_space == ufl.sobolevspace.L2
        continuous = dst.ufl_element().sobolev_space != ufl.sobolevspace.L2
        method = "project" if discontinuous and continuous and same_mesh and dst.ufl_element().degree() == 1 else "interpolate"
    if method == "interpolate":
        return SparseMap.from_scipy(interpolation_matrix(src, dst))
    if not same_mesh:
        raise UnsupportedSpaceError("method='project' needs the input on the output's mesh; use 'interpolate'")
    B = assemble_scipy(fd.inner(fd.TrialFunction(src), fd.TestFunction(dst)) * fd.dx)
    lumped = np.asarray(fd.assemble(fd.TestFunction(dst) * fd.dx).dat.data_ro, dtype=np.float64).copy()
    if lumped.min() <= 0:
        raise UnsupportedSpaceError(
            f"method='project' needs positive lumped masses, {dst.ufl_element()} has some <= 0; use 'interpolate'"
        )
    return SparseMap.from_scipy(sp.diags(1.0 / lumped) @ B)


def input_fields(input_spaces: Mapping[str, fd.FunctionSpace]) -> list[InputField]:
    """Input field descriptions (name, components) of named input spaces."""
    return [InputField(name, int(np.prod(V.value_shape, dtype=int))) for name, V in input_spaces.items()]


def context_from_spaces(
    input_spaces: Mapping[str, fd.FunctionSpace] | Sequence[fd.FunctionSpace],
    output_space: fd.FunctionSpace,
    bcs: BCs = None,
    *,
    method: str = "auto",
    hierarchy: bool = False,
    coarsest_nodes: int = 0,
    mesh_spec: str | None = None,
    levels: str = "geometric",
) -> MeshContext:
    """The mesh context of a model with these input spaces, output space and Dirichlet conditions.

    Parameters
    ----------
    input_spaces
        The input fields' spaces in channel order (a dict by name, or a sequence); on the
        output's mesh or on another mesh of the domain.
    output_space
        A Lagrange-type (nodal) scalar or vector space: its DOF nodes are the processor's.
    bcs
        Dirichlet conditions of the output: fixed ones (their data are the fixed
        lifting), or, for data that depend on the inputs, a function of the named inputs
        (``{name: Function}``, ``input_spaces`` then a dict) returning them, e.g.
        ``lambda x: DirichletBC(V, x["g"], "on_boundary")``: the context then holds the
        data as lifting maps of the inputs (:func:`fe_operators.fem.lifting.dirichlet_map`).
    method
        How inputs reach the output nodes (see the module docstring).
    hierarchy
        Also build the mesh hierarchy (multigrid processors): the levels of the
        ``MeshHierarchy`` the output's mesh belongs to (a mesh loaded from a spec such as
        ``"plate_holes/r2"``), or, for a built-in structured ``mesh_spec`` such as
        ``"unitsquare:64"``, a nested hierarchy with the same nodes
        (:func:`fe_operators.fem.hierarchy.hierarchy_operators`).
    coarsest_nodes
        Extend the hierarchy below its coarsest mesh by smoothed aggregation until the
        coarsest level has at most this many nodes
        (:func:`fe_operators.multigrid.aggregation.extend_hierarchy`; 0: no extension).
    mesh_spec
        The spec the output's mesh was loaded from, if known.
    levels
        Where the hierarchy's levels come from (see :func:`hierarchy_context`):
        ``"geometric"`` (a ``MeshHierarchy``, else :class:`~fe_operators.errors.NoHierarchyError`),
        ``"auto"`` (a ``MeshHierarchy`` where there is one, else aggregation only: any
        mesh) or ``"algebraic"`` (aggregation only).

    Returns
    -------
    MeshContext
        On the CPU; float64 geometry and lifting.

    Raises
    ------
    SpaceMismatchError
        ``hierarchy`` for a mesh that has none (the message says what to do).
    BoundaryDataError
        ``bcs`` whose data are not affine in the inputs.
    """
    check_supported(output_space)
    named = isinstance(input_spaces, Mapping)
    if callable(bcs) and not isinstance(bcs, fd.DirichletBC) and not named:
        raise TypeError("bcs as a function of the inputs needs input_spaces as a dict name -> space")
    spaces = dict(input_spaces) if named else {str(k): V for k, V in enumerate(input_spaces)}
    return _context(spaces, output_space, dirichlet_map(output_space, bcs, spaces), method=method,
                    hierarchy=hierarchy, coarsest_nodes=coarsest_nodes, mesh_spec=mesh_spec, levels=levels)


def _context(input_spaces: Mapping[str, fd.FunctionSpace], output_space: fd.FunctionSpace, dmap: DirichletMap, *,
             method: str, hierarchy: bool, coarsest_nodes: int, mesh_spec: str | None,
             levels: str = "geometric") -> MeshContext:
    """The context of :func:`context_from_spaces` for the output's Dirichlet data ``dmap``."""
    check_supported(output_space)
    graph = dof_graph(output_space)
    dofs = dmap.dofs
    n = graph.num_nodes
    ncomp = int(output_space.block_size)
    lifting_maps = tuple(SparseMap.from_scipy(dmap.maps[name]) if name in dmap.maps else None
                         for name in input_spaces) if dmap.maps else ()
    return MeshContext(
        coords=torch.from_numpy(graph.coords.copy()),
        edge_index=graph.edge_index.clone(),
        edge_attr=graph.edge_attr.clone(),
        indptr=torch.from_numpy(graph.indptr.copy()),
        mask=dofs.mask.reshape(n, ncomp).clone(),
        lifting=torch.from_numpy(dmap.constant.reshape(n, ncomp).copy()),
        free=torch.from_numpy(dofs.free.copy()),
        input_maps=tuple(input_map(V, output_space, method) for V in input_spaces.values()),
        hierarchy=hierarchy_context(output_space, dofs.bcs, coarsest_nodes=coarsest_nodes, mesh_spec=mesh_spec,
                                    levels=levels) if hierarchy else None,
        lifting_maps=lifting_maps,
        node_weights=torch.from_numpy(node_weights(output_space)),
    )


#: values of the ``levels`` argument of :func:`hierarchy_context`
LEVEL_SOURCES = ("geometric", "auto", "algebraic")


def hierarchy_context(output_space: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC] = (), *,
                      coarsest_nodes: int = 0, mesh_spec: str | None = None,
                      levels: str = "geometric") -> Hierarchy:
    """The levels of ``output_space``'s mesh, a :class:`~fe_operators.multigrid.hierarchy.Hierarchy`
    (see :func:`context_from_spaces`).

    ``levels``: ``"geometric"`` — the levels of the mesh's ``MeshHierarchy``
    (:func:`fe_operators.fem.hierarchy.hierarchy_operators`; NoHierarchyError for a mesh
    without one), extended below by aggregation to ``coarsest_nodes``; ``"auto"`` — the
    same where there is a hierarchy, else the mesh itself and aggregated levels below it
    (any mesh); ``"algebraic"`` — the mesh itself and aggregated levels only
    (:func:`fe_operators.multigrid.levels.mesh_levels`).
    """
    from fe_operators.fem.hierarchy import hierarchy_operators
    from fe_operators.multigrid.aggregation import extend_hierarchy
    from fe_operators.multigrid.levels import mesh_levels

    if levels not in LEVEL_SOURCES:
        raise ValueError(f"expected levels in {LEVEL_SOURCES}, got {levels!r}")
    if levels == "geometric":
        return extend_hierarchy(hierarchy_operators(output_space, bcs, mesh_spec=mesh_spec), coarsest_nodes)
    return mesh_levels(output_space, bcs, mesh_spec=mesh_spec, geometric=levels == "auto",
                       coarsest_nodes=coarsest_nodes)


def context_for_model(model: SPON, problem: Any, *, method: str = "auto",
                      mesh_spec: str | None = None) -> MeshContext:
    """The mesh context ``model`` needs to run on ``problem``'s spaces (another mesh of the domain).

    A processor that needs a mesh hierarchy gets all levels of the problem mesh's
    hierarchy; it picks the levels that match its own (see
    :meth:`~fe_operators.models.processors.multigrid.MultigridProcessor.start_level`).
    The lifting maps are the problem's Dirichlet data on that mesh, so a model whose
    boundary data depend on its inputs stays exact there.
    """
    return context_from_problem(problem, method=method, mesh_spec=mesh_spec,
                                **model.processor.context_options(model.processor.config))


def context_from_problem(problem: Any, *, method: str = "auto", hierarchy: bool = False,
                         coarsest_nodes: int = 0, mesh_spec: str | None = None,
                         levels: str = "geometric") -> MeshContext:
    """:func:`context_from_spaces` for a Problem's spaces and Dirichlet data.

    The lifting is the problem's :meth:`~fe_operators.problems.Problem.dirichlet_map`:
    a fixed part (the data for zero inputs, Darcy's ``u = 0``) and, where the data depend
    on the inputs (Poisson's ``g``, Stokes' ``d g``), lifting maps of those inputs.
    """
    return _context(problem.input_spaces, problem.output_space, problem.dirichlet_map(), method=method,
                    hierarchy=hierarchy, coarsest_nodes=coarsest_nodes, mesh_spec=mesh_spec, levels=levels)


def _size_key(cls: type) -> str:
    """The option of processor class ``cls`` that a message about its size names."""
    names = {f.name for f in dataclasses.fields(cls.Options)}
    return next((k for k in ("hidden", "width") if k in names), "processor")


def check_processor_size(processor: str, context: MeshContext, channels: int, options: Any, *,
                         dtype: torch.dtype = torch.float32, copies: int = 1) -> None:
    """Refuse a processor whose weights would not fit in memory, before they are allocated.

    The processor is built on PyTorch's ``meta`` device, which allocates nothing, to
    count its weights; ``copies`` of them in ``dtype`` are compared with the memory
    available (:func:`fe_operators.limits.check_allocation`).  A processor that cannot
    be built on the meta device (its construction computes with real data) is not
    checked.

    Parameters
    ----------
    processor
        The registered processor name.
    context
        The mesh context it is built for (e.g. an MLP's first layer has ``n_nodes *
        channels`` inputs).
    channels
        Input channels.
    options
        The processor's validated options (an instance of its ``Options``).
    dtype
        Of the weights.
    copies
        Copies of the weights the caller will hold: 1 for the model alone, 4 for
        training with Adam (weights, gradients and two moment estimates).

    Raises
    ------
    ConfigError
        The estimate exceeds the memory available; the key is the processor's size
        option (``hidden`` for the MLP, ``width`` for the others).
    """
    cls = processor_class(processor)
    try:
        with torch.device("meta"):
            meta = cls.for_context(context, channels, context.ncomp, options)
        count = sum(p.numel() for p in meta.parameters())
    except Exception:  # construction that needs real data: not checked here
        return
    held = "the weights" if copies == 1 else ("the weights, their gradients and Adam's two moments" if copies == 4
                                               else f"{copies} copies of the weights")
    check_allocation(count * dtype.itemsize * copies,
                     f"the {processor} processor's {count:.3g} weights ({held}, {str(dtype).removeprefix('torch.')})",
                     _size_key(cls), fix="choose smaller layer sizes")


def spon_for_problem(
    problem: Any,
    processor: str = "gnn",
    *,
    lifting_input: str | None = "auto",
    method: str = "auto",
    dtype: torch.dtype = torch.float32,
    mesh_spec: str | None = None,
    weight_copies: int = 1,
    decoder: str = "dirichlet",
    **options: Any,
) -> SPON:
    """A SPON for a Problem: its inputs as channels, its output space and conditions.

    Parameters
    ----------
    problem
        A :class:`~fe_operators.problems.Problem`.
    processor
        A registered processor name (``"gnn"``, ``"mlp"``, ``"multigrid"``).
    lifting_input
        How the boundary data are lifted: ``"auto"`` through the problem's Dirichlet
        map of its inputs (fixed data where they do not depend on the inputs); the name
        of the one input the data depend on (checked, then as ``"auto"``); or None for
        fixed data, refused where the data depend on the inputs.
    method
        How inputs reach the output nodes.
    dtype
        Of the weights (outputs are float64 regardless).
    mesh_spec
        The spec the problem's mesh was loaded from (lets a processor that needs a mesh
        hierarchy find one for built-in structured meshes, see :func:`context_from_spaces`).
    weight_copies
        Copies of the weights that must fit in memory (4 to train with Adam), checked
        before they are allocated (:func:`check_processor_size`).
    decoder
        ``"dirichlet"`` or ``"divergence_free"`` (a 2D Taylor–Hood velocity output: the
        model gets the output space's :func:`~fe_operators.fem.leray.leray_projection`
        and returns exactly divergence-free velocities on the Alfeld-refined mesh).
    **options
        Processor options (see :meth:`SPON.from_context`).

    Raises
    ------
    ConfigError
        ``lifting_input`` (key ``"lifting_input"``) None where the boundary data depend
        on the inputs, or a name other than the one input they depend on; weights that
        would not fit in memory (key ``"hidden"`` or ``"width"``).
    BoundaryDataError
        The problem's boundary data are not affine in its inputs.

    Examples
    --------
    >>> problem = get_problem("poisson", fd.UnitSquareMesh(8, 8))     # doctest: +SKIP
    >>> model = spon_for_problem(problem, "gnn", width=32, depth=3)   # model.lifting_inputs == ("g",)
    """
    opts = processor_options(processor, options)
    cls = processor_class(processor)
    context = context_from_problem(problem, method=method, mesh_spec=mesh_spec,
                                   **cls.context_options(dataclasses.asdict(opts)))
    names = list(problem.input_spaces)
    depends = [names[k] for k in context.lifting_inputs]
    if lifting_input is None and depends:
        raise ConfigError("lifting_input", f"null means fixed boundary data, but the {problem.name!r} problem's "
                                           f"Dirichlet data depend on the inputs {depends}: the model would impose "
                                           "wrong values there; use 'auto'")
    if lifting_input not in (None, "auto") and [lifting_input] != depends:
        raise ConfigError("lifting_input", f"expected 'auto', null or the input the boundary data depend on; the "
                                           f"{problem.name!r} problem's data depend on {depends or 'no input'}, "
                                           f"got {lifting_input!r}")
    V = problem.output_space
    check_processor_size(processor, context, sum(f.ncomp for f in input_fields(problem.input_spaces)), opts,
                         dtype=dtype, copies=weight_copies)
    model = SPON.from_context(context, input_fields(problem.input_spaces), processor,
                              output_scalar=V.value_shape == (), decoder=decoder, **options)
    if decoder == "divergence_free":
        from fe_operators.fem.leray import leray_projection

        model.set_projection(leray_projection(V, np.flatnonzero(context.mask.reshape(-1).cpu().numpy())))
    return model.to(dtype)
