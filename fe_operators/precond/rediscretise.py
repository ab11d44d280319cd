r"""Coarse operators by rediscretisation: the problem's bilinear form assembled on each coarse mesh.

The option ``neuralmg_coarse rediscretise`` of :class:`~fe_operators.precond.NeuralMG`
(beside the default ``galerkin``, :class:`~fe_operators.precond.mg.GalerkinHierarchy`),
as Firedrake's geometric multigrid (``pc_type mg``) builds its coarse operators: the
solve's form is reconstructed on every coarser mesh of the ``MeshHierarchy``
(``firedrake.mg.ufl_utils.coarsen``: arguments on the same element there) and assembled
there, instead of the products :math:`\tilde P^T A \tilde P`.

**The coefficients on coarse levels.**  Every ``Function`` in the form (the diffusion
coefficient, a Lamé parameter, ...) is represented on each coarse mesh by its **cell
average**: the :math:`L^2` projection onto DG0 of the same value shape on that mesh
(``firedrake.inject`` into DG0, a local projection over each coarse cell's children;
level by level, and an average of averages is the average over the finest cells).  Why
the average, and not pointwise injection: for a P1 form
:math:`\int a\,\nabla u\cdot\nabla v` on nested meshes the coarse basis functions have
constant gradients on each coarse cell :math:`K`, so the Galerkin product is
:math:`\sum_K (\int_K a)\,\nabla\phi_i\cdot\nabla\phi_j` — exactly the rediscretised form
with the cell average of :math:`a`.  The averaged coarse operators then *are* the
Galerkin operators there (to round-off; tested), so a checkerboard or a channelised
coefficient of any contrast keeps the Galerkin cycle's convergence.  Pointwise injection
of a CG1 coefficient instead samples it at the coarse vertices and loses every feature
narrower than a coarse cell (a channel between two coarse vertices disappears); and the
harmonic or geometric mean would under-weight the conducting cells, which the Galerkin
identity above says carry the coarse energy.  For higher degrees, reaction terms or
tensor coefficients the average is the natural rediscretisation but no longer exactly
Galerkin.  Constants and the mesh geometry carry over as they are.

**Boundary conditions** are those of the masked Galerkin hierarchy
(:mod:`~fe_operators.precond.mg`): the coarse Dirichlet mask :math:`b_{l-1} = [P_l^T b_l >
1/2]` from the fine matrix's decoupled rows, and the coarse operator
:math:`(I - B)K_{l-1}(I - B) + B` with :math:`K_{l-1}` the assembled coarse form: its
Dirichlet rows and columns are identity rows, as in the Galerkin hierarchy, whatever
boundary conditions the solve named.

**SPD.**  :math:`K_{l-1}` is the form on a conforming coarse space, symmetric positive
semi-definite, and definite on the functions vanishing at the masked nodes (where the
fine form is, e.g. with Dirichlet conditions), so every coarse operator is SPD; the
V-cycle's SPD proof (:mod:`~fe_operators.precond.mg`) needs only SPD level operators and
the energy-convergent symmetric smoothers, so it holds unchanged.  (It is no longer a
contraction in the fine energy norm for certain: CG is the Krylov method to use.)

**Sparsity.**  The coarse matrices have the coarse form's own pattern: for P1 on
``unitsquare:16/r4``'s levels 7 entries per row, where the ``MatPtAP`` product's symbolic
pattern holds about 18 (the extra entries are zeros of the product).  So besides the
cheaper set-up, every coarse-level product of the cycle (and the smoother's row
features) touches fewer entries.

**Per new coefficient** only the symbolic structure is reused: the coarse forms, their
compiled kernels, assemblers and sparsity (built at the first set-up).  Each
:meth:`~RediscretisedHierarchy.update` re-averages the coefficients and re-assembles
every coarse operator, which counts as set-up.
"""

from __future__ import annotations

from typing import Any, Sequence

import firedrake as fd
from firedrake.assemble import get_assembler
from firedrake.mg.ufl_utils import coarsen
from firedrake.mg.utils import get_level

from fe_operators.precond.mg import GalerkinHierarchy, _complement

__all__ = ["RediscretisedHierarchy", "cell_average_space"]


def cell_average_space(mesh: Any, shape: tuple[int, ...]) -> Any:
    """DG0 on ``mesh`` with value shape ``shape``: where a coefficient's cell averages live."""
    if shape == ():
        return fd.FunctionSpace(mesh, "DG", 0)
    if len(shape) == 1:
        return fd.VectorFunctionSpace(mesh, "DG", 0, dim=shape[0])
    return fd.TensorFunctionSpace(mesh, "DG", 0, shape=shape)


class RediscretisedHierarchy(GalerkinHierarchy):
    """Masked hierarchy whose coarse operators are the form assembled on the coarse meshes.

    The same masks, masked prolongations, interface and in-place updates as
    :class:`~fe_operators.precond.mg.GalerkinHierarchy` (the fine operator is the
    solve's own matrix); the coarse operators are the module docstring's.

    Parameters
    ----------
    A
        The fine matrix (assembled AIJ, SPD, Dirichlet rows as identity rows): the
        solve's assembly of ``form``.
    prolongations
        PETSc AIJ ``P_l``, coarsest first
        (:func:`~fe_operators.fem.transfer.level_prolongations` of ``form``'s space).
    form
        The solve's bilinear form (its ``Function`` coefficients are re-read at every
        :meth:`update`).

    Raises
    ------
    ValueError
        The form is not a bilinear form on a level of a ``MeshHierarchy``, or has a
        coefficient on a mixed space or on another mesh.
    """

    def __init__(self, A: Any, prolongations: Sequence[Any], form: Any) -> None:
        args = form.arguments()
        if len(args) != 2:
            raise ValueError(f"expected a bilinear form to rediscretise, got a {len(args)}-form")
        mesh = args[0].function_space().mesh()
        hierarchy, level = get_level(mesh)
        if hierarchy is None or level != int(level) or int(level) < len(prolongations):
            raise ValueError("the form's mesh is not a level of a MeshHierarchy with the levels asked for")
        self._forms: list[Any] = []  # coarsest first, like the operators
        self._transfers: list[tuple[Any, Any]] = []  # (finer, coarser) in the order they are computed
        fine_form = form
        for _ in range(len(prolongations)):
            mapping = {}
            for f in fine_form.coefficients():
                if not isinstance(f, fd.Function):
                    continue
                if len(f.function_space()) > 1:
                    raise ValueError(f"coefficient {f.name()!r} is on a mixed space: rediscretisation averages "
                                     "scalar, vector and tensor coefficients only; use neuralmg_coarse galerkin")
                if f.function_space().mesh() is not fine_form.ufl_domain():
                    raise ValueError(f"coefficient {f.name()!r} is not on the form's mesh; use neuralmg_coarse "
                                     "galerkin")
                coarse_mesh = coarsen(f.function_space().mesh(), coarsen)
                mapping[f] = fd.Function(cell_average_space(coarse_mesh, f.ufl_shape), name=f"{f.name()}_average")
                self._transfers.append((f, mapping[f]))
            fine_form = coarsen(fine_form, coarsen, coefficient_mapping=mapping)
            self._forms.insert(0, fine_form)
        self._assemblers = [get_assembler(f, mat_type="aij") for f in self._forms]
        self._tensors: list[Any] = [None] * len(self._forms)
        super().__init__(A, prolongations)

    def _before_coarse_operators(self) -> None:
        # the coefficients' cell averages, finest to coarsest (each level from the one above)
        for fine, coarse in self._transfers:
            fd.inject(fine, coarse)

    def _coarse_operator(self, level: int, fine: Any, P: Any, boundary: Any, result: Any) -> Any:
        assembler = self._assemblers[level]
        if result is None or self._tensors[level] is None or self._tensors[level].petscmat.handle != result.handle:
            self._tensors[level] = assembler.allocate()
        tensor = assembler.assemble(tensor=self._tensors[level])
        K = tensor.petscmat
        keep = _complement(boundary)
        K.diagonalScale(keep, keep)  # (I - B) K (I - B); update() adds B
        keep.destroy()
        return K

    def destroy(self) -> None:
        """Free the coarse operators and masked prolongations (the assemblers are kept)."""
        super().destroy()
        self._tensors = [None] * len(self._forms)
