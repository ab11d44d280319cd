"""The "Adding a learned preconditioner" recipe of docs/extending.md: a toy kind defined here.

The kind below is the recipe's example: a network (one learned weight ``w``), a
Firedrake ``PCBase`` that applies ``w D⁻¹``, an options dataclass, and a
:class:`LearnedPreconditioner` subclass that says how to train it and which solver
options select it.  Registered (in a fixture, so the other test modules see the package's
kinds alone), it shows in ``precond train --print-config``, trains through
``precond train``, is checked like the package's kinds, and runs as a row of
``precond evaluate`` and in a user's Firedrake solve.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

from fe_operators.cli.main import main
from fe_operators.options import option, positive
from fe_operators.precond import LearnedPreconditioner, Method, register_preconditioner
from fe_operators.precond.base import options_prefix, resolve_model
from fe_operators.train.checkpoint import read_checkpoint

from precond_helpers import CG, family, make_solver

MESH = "unitsquare:4/r2"


# ----------------------------------------------------------------------------- the recipe's kind
class ToyNet(torch.nn.Module):
    """One weight ``w = exp(log_w)``: the Jacobi multiplier ``w / a_ii`` of every row."""

    def __init__(self, init_w: float = 0.5) -> None:
        super().__init__()
        self.init_w = float(init_w)
        self.log_w = torch.nn.Parameter(torch.tensor(math.log(init_w), dtype=torch.float64))

    @property
    def config(self) -> dict[str, Any]:
        return {"init_w": self.init_w}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ToyNet":
        return cls(**config)

    def forward(self, diagonal: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_w) / diagonal


class ToyJacobiPC(PCBase):
    """``y = w D⁻¹ x`` with the trained ``w`` (a Firedrake PCBase; option ``toyjacobi_model``)."""

    needs_python_pmat = False

    def initialize(self, pc: PETSc.PC) -> None:
        self.net = resolve_model("ToyJacobiPC", options_prefix(pc, "toyjacobi_"), None, self.get_appctx(pc),
                                 kind="toy_jacobi")
        self.m = None
        self.update(pc)

    def update(self, pc: PETSc.PC) -> None:
        _, P = pc.getOperators()
        diag = P.getDiagonal()
        with torch.no_grad():
            m = self.net(torch.from_numpy(diag.array_r.copy())).numpy()
        self.m = diag
        self.m.array[:] = m

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        y.pointwiseMult(x, self.m)

    applyTranspose = apply

    def view(self, pc: PETSc.PC, viewer: Any = None) -> None:
        pass


@dataclasses.dataclass
class ToySection:
    """Options of the ``toy_jacobi`` kind (its section ``toy``)."""

    init_w: float = option("The weight w at initialisation.", positive, default=0.5)
    errors: int = option("Random errors per step.", positive, default=4)


class ToyJacobiKind(LearnedPreconditioner):
    """Jacobi with one learned weight, trained on the Richardson step's energy-norm reduction."""

    section = "toy"
    options = ToySection
    section_doc = "Toy Jacobi weight (kind toy_jacobi)."
    description = "a toy learned Jacobi weight (ToyJacobiPC)"
    network = f"{__name__}:ToyNet"
    what = "a toy Jacobi weight"
    users = "ToyJacobiPC"
    model_flag = "--toy-model"
    checkpoint_name = "toy.pt"
    methods = {"toy_jacobi": Method("CG + the toy learned Jacobi", f"{__name__}.ToyJacobiPC", "toyjacobi_model")}

    @staticmethod
    def _rho(net: torch.nn.Module, A: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """log of ‖(I − w D⁻¹ A) e‖_A / ‖e‖_A, averaged over the columns of ``e``."""
        def energy(v):
            return (v * (A @ v)).sum(0)

        e2 = e - net(torch.diagonal(A))[:, None] * (A @ e)
        return 0.5 * torch.log(energy(e2) / energy(e)).mean()

    def train(self, cfg, family, log):
        from fe_operators.precond.training import heldout_seed, optimise
        from fe_operators.sparse.petsc import petsc_to_scipy

        rng = np.random.default_rng(cfg.train.seed)
        dense = [torch.from_numpy(petsc_to_scipy(family.operator(family.sample_coefficient(rng))).toarray())
                 for _ in range(cfg.family.samples)]
        held = torch.from_numpy(petsc_to_scipy(family.operator(family.sample_coefficient(
            np.random.default_rng(heldout_seed(cfg))))).toarray())
        net = ToyNet(cfg.toy.init_w)
        gen = torch.Generator().manual_seed(cfg.train.seed)

        def step_loss(step):
            A = dense[step % len(dense)]
            return self._rho(net, A, torch.randn(A.shape[0], cfg.toy.errors, generator=gen, dtype=torch.float64))

        history, seconds = optimise(list(net.parameters()), step_loss, cfg, log)
        e = torch.randn(held.shape[0], 16, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            report = {"w": float(torch.exp(net.log_w)), "rho_learned": float(torch.exp(self._rho(net, held, e))),
                      "rho_classical": float(torch.exp(self._rho(ToyNet(0.5), held, e))), "train_seconds": seconds}
        return net.eval(), history, report

    def worse(self, cfg, report):
        return "Richardson reduction", report["rho_learned"], report["rho_classical"], "Jacobi with w = 1/2"


@pytest.fixture
def toy_kind():
    """``toy_jacobi`` registered for one test (the recipe decorates the class instead)."""
    from fe_operators.precond.registry import KINDS

    register_preconditioner("toy_jacobi")(ToyJacobiKind)
    try:
        yield KINDS["toy_jacobi"]
    finally:
        KINDS.pop("toy_jacobi", None)


def _train(tmp_path, capsys) -> str:
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump({"kind": "toy_jacobi", "family": {"mesh": MESH, "samples": 2},
                                    "toy": {"init_w": 0.3}, "train": {"steps": 30, "lr": 0.05, "log_every": 10},
                                    "out": "toy.pt"}))
    assert main(["precond", "train", "--config", str(path)]) == 0
    assert "step    30" in capsys.readouterr().out
    return str(tmp_path / "toy.pt")


# ----------------------------------------------------------------------------- tests
def test_a_registered_kind_is_in_print_config(toy_kind, capsys):
    assert main(["precond", "train", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "'toy_jacobi': a toy learned Jacobi weight (ToyJacobiPC)" in out
    data = yaml.safe_load(out)
    assert data["toy"] == {"init_w": 0.5, "errors": 4} and "smoother" in data and "dcdm" in data


def test_a_registered_kind_trains_and_its_checkpoint_is_of_its_kind(toy_kind, tmp_path, capsys):
    path = _train(tmp_path, capsys)
    data = read_checkpoint(path)
    assert data["model"]["class"] == f"{__name__}:ToyNet" and data["run"]["config"]["kind"] == "toy_jacobi"
    report = data["run"]["precond"]["report"]
    # the Richardson step with D^-1 A's spectrum in (0, 2): the best w is near 1, far from the 0.3 it began at
    assert 0.6 < report["w"] < 1.3 and report["rho_learned"] < report["rho_classical"] < 1
    # the package's kind checks know it: a toy checkpoint given as a smoother names its own flag
    status = main(["precond", "evaluate", "--model", path, "--mesh", MESH, "--methods", "neural_mg"])
    err = capsys.readouterr().err
    assert status == 1 and "a toy Jacobi weight (kind toy_jacobi)" in err and "--toy-model" in err


def test_a_registered_kind_is_a_row_of_evaluate_and_runs_in_a_real_solve(toy_kind, tmp_path, capsys):
    path = _train(tmp_path, capsys)
    status = main(["precond", "evaluate", "--toy-model", path, "--mesh", MESH, "--methods", "toy_jacobi,icc",
                   "--seed", "5"])
    out = capsys.readouterr().out
    assert status == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert list(rows) == ["toy_jacobi", "icc"] and rows["toy_jacobi"][7] == "yes"
    # the same solve by hand, with the second coefficient of seed 5 (evaluate's first measured one):
    # CG is invariant to the scale of a preconditioner, so it takes exactly Jacobi's iterations
    fam = family(MESH)
    rng = np.random.default_rng(5)
    a = [fam.sample_coefficient(rng) for _ in range(2)][1]
    its = {}
    for name, params in {"toy": toy_kind.solver_parameters("toy_jacobi", path, CG),
                         "jacobi": {**CG, "pc_type": "jacobi"}, "none": {**CG, "pc_type": "none"}}.items():
        solver, _ = make_solver(fam, a, params)
        solver.solve()
        its[name] = solver.snes.ksp.getIterationNumber()
    assert its["toy"] == its["jacobi"] == int(rows["toy_jacobi"][2]) < its["none"]
    main(["precond", "evaluate", "--help"])
    assert re.search(r"toy_jacobi +CG \+ the toy learned Jacobi", capsys.readouterr().out)
    assert re.search(r"--toy-model PATH +a toy Jacobi weight checkpoint \(kind toy_jacobi\)", out + _usage(capsys))


def _usage(capsys) -> str:
    main(["precond", "evaluate", "--help"])
    return re.sub(r"\s+", " ", capsys.readouterr().out)
