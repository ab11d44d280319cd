"""The contract every PDE problem family fulfils.

A *problem* is a mesh, input function spaces, an output function space, UFL forms,
boundary conditions and an input sampler.  Data generation, SPON's encoder/decoder and
evaluation only talk to problems through this interface:

* :attr:`Problem.input_spaces` — named input spaces (one or several input fields),
* :attr:`Problem.output_space` — the solution space,
* :meth:`Problem.sample_inputs` — random inputs of one sample from a numpy ``Generator``,
* :meth:`Problem.solve` — the FE solution for given inputs (solver structures reused),
* :meth:`Problem.output_bcs` — the Dirichlet conditions the output satisfies (their data
  may depend on the inputs, e.g. random boundary data: give ``DirichletBC`` the input
  Function or a UFL expression of the inputs, so that :meth:`Problem.dirichlet_map` can
  state the data as a sparse affine map of the inputs, which SPON lifts exactly),
* :attr:`Problem.params` — JSON-able parameters, stored as provenance,
* :meth:`Problem.spd_operator` (optional) — the bilinear form and homogeneous Dirichlet
  conditions of a linear SPD problem's operator for a sample's inputs: the one hook
  through which ``fe-operators precond train`` trains learned preconditioners on a
  family (Darcy, elasticity, or a user's own).

Each sample's randomness comes from ``numpy.random.default_rng([seed, index])``
(:func:`sample_rng`), so any subset of a dataset can be regenerated.
"""

from __future__ import annotations

import abc
import collections.abc
import inspect
import types
import typing
from typing import Any, Mapping

import numpy as np

import firedrake as fd

from fe_operators.errors import SolveError
from fe_operators.fem.lifting import DirichletMap, dirichlet_map
from fe_operators.problems._common import json_markers

__all__ = ["Problem", "OperatorForm", "bound_params", "sample_rng", "has_spd_operator"]


class OperatorForm(typing.NamedTuple):
    """A linear SPD operator as Firedrake assembles it (:meth:`Problem.spd_operator`).

    Attributes
    ----------
    form
        The bilinear form ``a(u, v)`` on ``output_space`` (trial and test functions of it),
        symmetric and coercive on the space with ``bcs``.
    bcs
        Homogeneous ``DirichletBC`` of ``output_space`` (assembled as identity rows and
        columns, as ``solve`` does).
    """

    form: Any
    bcs: list


def has_spd_operator(problem: Any) -> bool:
    """Whether a Problem (class or instance) implements :meth:`Problem.spd_operator`."""
    cls = problem if isinstance(problem, type) else type(problem)
    return getattr(cls, "spd_operator", None) is not getattr(Problem, "spd_operator", None)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of a dataset with seed ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def _jsonable(value: Any, hint: Any) -> Any:
    """``value`` in the JSON-able form its annotation ``hint`` asks for.

    ``float``, ``int`` and ``bool`` (optionally ``| None``) convert the value with the
    type; boundary markers (a union of ``str``/``int`` and ``Sequence[int]``) become
    :func:`~fe_operators.problems._common.json_markers`; anything else is kept as given.
    """
    if value is None:
        return None
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    members = [m for m in members if m is not type(None)]
    if len(members) == 1 and members[0] in (float, int, bool):
        return members[0](value)
    if any(typing.get_origin(m) is collections.abc.Sequence and typing.get_args(m) == (int,) for m in members) \
            and all(m in (str, int) or typing.get_origin(m) is collections.abc.Sequence for m in members):
        return json_markers(value)
    return value


def bound_params(family: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``family``'s constructor, read by name from ``values``, as JSON-able data.

    How a family states its :attr:`Problem.params` once: after resolving its defaults
    (``smoothness = 2 - d/2 if smoothness is None else ...``), its ``__init__`` calls
    ``super().__init__(mesh, **bound_params(MyFamily, locals()))``, and every parameter
    of the signature after ``mesh`` is recorded, in the signature's order, with its
    resolved value converted as its annotation says (``float``, ``int``, ``bool``:
    converted; boundary markers: lists of ints; anything else as it is).

    Parameters
    ----------
    family
        The class whose ``__init__`` signature names the parameters.
    values
        The constructor's local variables (``locals()``), holding every parameter.
    """
    init = family.__init__
    hints = typing.get_type_hints(init)
    names = list(inspect.signature(init).parameters)[2:]  # after self, mesh
    return {name: _jsonable(values[name], hints.get(name)) for name in names}


class Problem(abc.ABC):
    """A family of PDE problems on one mesh.

    Subclasses set :attr:`name`, build spaces, forms and a reusable solver in
    ``__init__``, and implement :meth:`sample_inputs`, :meth:`solve` and
    (when the output carries Dirichlet conditions) :meth:`output_bcs`.

    Parameters
    ----------
    mesh
        The Firedrake mesh.
    **params
        Family-specific parameters (documented by each subclass); they must be JSON-able.
    """

    #: registry name of the family, e.g. ``"darcy"``
    name: str = ""

    #: options given to the :attr:`solver_parameters` setter (``None``: read the solvers)
    _solver_parameters: dict[str, Any] | None = None

    def __init__(self, mesh: fd.MeshGeometry, **params: Any) -> None:
        self.mesh = mesh
        self.params: dict[str, Any] = dict(params)

    # -------------------------------------------------------------- spaces
    @property
    @abc.abstractmethod
    def input_spaces(self) -> Mapping[str, fd.FunctionSpace]:
        """Named input spaces, in channel order."""

    @property
    @abc.abstractmethod
    def output_space(self) -> fd.FunctionSpace:
        """The solution space."""

    # -------------------------------------------------------------- sampling and solving
    @abc.abstractmethod
    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw the inputs of one sample (keys and spaces as :attr:`input_spaces`)."""

    @abc.abstractmethod
    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for the given inputs; return a new Function on :attr:`output_space`.

        Raises
        ------
        SolveError
            The solver did not converge.
        """

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """Dirichlet conditions of the output for these inputs (default: none).

        Data that depend on the inputs should be the input Functions themselves or UFL
        expressions of them (``DirichletBC(V, d * inputs["g"], 1)``), not Functions
        computed from them, so that :meth:`dirichlet_map` can read the dependence.
        """
        return []

    def spd_operator(self, inputs: Mapping[str, fd.Function], **overrides: float) -> OperatorForm:
        """The operator of the linear SPD problem of a sample with ``inputs`` (optional hook).

        What learned preconditioners are trained on (``fe-operators precond train``,
        ``family.problem``) and evaluated with: the bilinear form on :attr:`output_space`,
        written with the input Functions themselves (a new form per call is fine), and
        homogeneous Dirichlet conditions.

        Parameters
        ----------
        inputs
            A sample's inputs (as :meth:`sample_inputs` returns them).
        **overrides
            Scalar constructor parameters that enter the operator only (elasticity's
            ``poisson_ratio``), for training over a range of them (``family.ranges``);
            a family raises ``TypeError`` for a parameter it cannot override.

        Returns
        -------
        OperatorForm
            ``(form, bcs)``.

        Raises
        ------
        NotImplementedError
            The family gives no operator (the default).
        """
        raise NotImplementedError(f"problem family {self.name!r} gives no spd_operator(inputs): it cannot train a "
                                  "learned preconditioner (docs/extending.md, 'Train a preconditioner on your "
                                  "problem')")

    def dirichlet_map(self) -> DirichletMap:
        """The output's Dirichlet data as an affine map of the inputs, ``g_0 + Σ_k L_k x_k``.

        Default: derived from :meth:`output_bcs` by
        :func:`~fe_operators.fem.lifting.dirichlet_map` (and checked on random inputs).
        Override it for data that are affine in the inputs but not written as UFL
        expressions of them.

        Raises
        ------
        BoundaryDataError
            The data are not affine in the inputs (or not readable as such).
        """
        return dirichlet_map(self.output_space, self.output_bcs, self.input_spaces)

    @property
    def solver_parameters(self) -> dict[str, Any] | None:
        """The PETSc options the problem's solves really use, Firedrake's defaults included.

        Read from the Firedrake variational solvers held as attributes of the problem:
        the options Firedrake passes to PETSc, i.e. the family's ``solver_parameters``
        merged with Firedrake's defaults (``snes_type: ksponly`` for a linear problem,
        ``ksp_rtol``, ...).  With several solvers, ``{attribute name: options}``;
        ``None`` when the problem holds none.  A problem that solves otherwise sets this
        property instead.  Data generation records it in the provenance and compares it
        when a run is resumed or extended.
        """
        if self._solver_parameters is not None:
            return dict(self._solver_parameters)
        solvers = {k: v for k, v in vars(self).items() if isinstance(v, fd.NonlinearVariationalSolver)}
        if not solvers:
            return None
        if len(solvers) == 1:
            return dict(next(iter(solvers.values())).parameters)
        return {k: dict(v.parameters) for k, v in solvers.items()}

    @solver_parameters.setter
    def solver_parameters(self, value: Mapping[str, Any] | None) -> None:
        self._solver_parameters = None if value is None else dict(value)

    # -------------------------------------------------------------- helpers
    def sample(self, seed: int, index: int) -> tuple[dict[str, fd.Function], fd.Function]:
        """Inputs and solution of sample ``index`` of the dataset with seed ``seed``."""
        inputs = self.sample_inputs(sample_rng(seed, index))
        try:
            return inputs, self.solve(inputs)
        except SolveError as exc:
            raise SolveError(exc.reason, index, exc.detail, exc.solver) from exc

    def description(self) -> dict[str, Any]:
        """JSON-able description: family name and parameters."""
        return {"problem": self.name, "params": dict(self.params)}
