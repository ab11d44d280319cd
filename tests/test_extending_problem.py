"""The "add a problem family" recipe of docs/extending.md: a toy family registered here, with the decorator.

The family below is the recipe's example: it registers itself by name with
``@register_problem`` and states its parameters once with ``bound_params``; generation,
the dataset file and rebuilding the problem from it then treat it as a family of the
package (no ``--problem`` needed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

import firedrake as fd

from fe_operators.data import FEDataset, FEFile, generate_dataset
from fe_operators.problems import FAMILIES, Problem, bound_params, get_problem, problem_class, register_problem
from fe_operators.problems.random_fields import GaussianRandomField


@register_problem("toy_reaction")
class ToyReaction(Problem):
    """-Δu + c u = f, u = 0 on ∂Ω, in CG1; input the source ``f``.

    Parameters
    ----------
    mesh
        A Firedrake mesh.
    c
        Reaction coefficient.
    length_scale, smoothness
        Matérn parameters of ``f`` (smoothness ``None``: 1.0).
    """

    def __init__(self, mesh: fd.MeshGeometry, c: float = 10.0, length_scale: float = 0.3,
                 smoothness: float | None = None) -> None:
        smoothness = 1.0 if smoothness is None else smoothness  # params record the resolved value
        super().__init__(mesh, **bound_params(ToyReaction, locals()))
        self.V = fd.FunctionSpace(mesh, "CG", 1)
        self.field = GaussianRandomField(self.V, length_scale, smoothness)
        self.f, self.u = fd.Function(self.V), fd.Function(self.V)
        u, v = fd.TrialFunction(self.V), fd.TestFunction(self.V)
        a = (fd.inner(fd.grad(u), fd.grad(v)) + fd.Constant(c) * u * v) * fd.dx
        self.bcs = [fd.DirichletBC(self.V, 0.0, "on_boundary")]
        problem = fd.LinearVariationalProblem(a, self.f * v * fd.dx, self.u, bcs=self.bcs, constant_jacobian=True)
        self.solver = fd.LinearVariationalSolver(problem, solver_parameters={"ksp_type": "preonly", "pc_type": "lu"})

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        return {"f": self.V}

    @property
    def output_space(self) -> fd.FunctionSpace:
        return self.V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        return {"f": self.field.sample(rng)}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        self.f.assign(inputs["f"])
        self.solver.solve()
        return self.u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        return self.bcs


def test_registered_family_is_known_by_name():
    assert problem_class("toy_reaction") is ToyReaction and ToyReaction.name == "toy_reaction"
    assert FAMILIES["toy_reaction"] == f"{__name__}:ToyReaction"
    problem = get_problem("toy_reaction", fd.UnitSquareMesh(2, 2), c=3)
    # every constructor parameter, the resolved default included, converted by its annotation
    assert problem.description() == {"problem": "toy_reaction",
                                     "params": {"c": 3.0, "length_scale": 0.3, "smoothness": 1.0}}
    assert isinstance(problem.params["c"], float)


def test_registration_refuses_a_taken_name_and_non_problems():
    with pytest.raises(ValueError, match="'darcy' is registered already"):
        register_problem("darcy")(type("Other", (ToyReaction,), {}))
    with pytest.raises(TypeError, match="Problem subclasses"):
        register_problem("not_a_problem")(dict)
    with pytest.raises(ValueError, match="without ':'"):
        register_problem("pkg:Class")
    assert "not_a_problem" not in FAMILIES


def test_toy_family_generates_and_rebuilds_from_its_file(tmp_path):
    out = tmp_path / "toy.h5"
    report = generate_dataset("toy_reaction", "unitsquare:4", 2, out, seed=3, params={"c": 5.0}, progress=False)
    assert report.generated == 2 and len(FEDataset(out)) == 2
    file = FEFile(out)
    rebuilt = file.rebuild_problem()  # a registered family: no problem= (no --problem) needed
    assert isinstance(rebuilt, ToyReaction) and rebuilt.params["c"] == 5.0
    _, u = rebuilt.sample(3, 1)
    _, stored = file.read([1])
    assert np.allclose(stored[0], u.dat.data_ro, rtol=0, atol=1e-12 * np.abs(u.dat.data_ro).max())
