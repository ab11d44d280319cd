"""The preconditioner commands fail like the others: one line naming the file and the fix.

Model files and their kinds, the mesh hierarchy and the options are checked before any
KSP is set up; a PETSc error raised around a Python PC's exception is reported as that
exception; a non-finite training loss is a TrainingError; a trained network worse than
its classical counterpart is refused (issue 13, items 3 and 6).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml

from fe_operators.cli.main import main
from fe_operators.cli.runner import run_command
from fe_operators.precond.config import precond_config_from_dict
from fe_operators.precond.dcdm import DCDMNet
from fe_operators.errors import PreconditionerSetupError
from fe_operators.precond.smoother import SmootherNet
from fe_operators.precond.training import write_precond_checkpoint

from precond_helpers import CG, NEURAL_MG, family, make_solver

MESH = "unitsquare:4/r2"
FCG = {**CG, "ksp_type": "fcg", "ksp_fcg_mmax": 2, "ksp_fcg_truncation_type": "standard",
       "pc_type": "python", "pc_python_type": "fe_operators.precond.DCDM"}


def _config(tmp_path, **data) -> str:
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _one_line(err: str) -> str:
    """The single error line of stderr (no traceback, no PETSc stack)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and not re.search(r"^\[\d+\] ", err, flags=re.M)  # nor PETSc's stack
    return lines[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained checkpoints of each kind (the kind checks need no training): {kind: path}."""
    from fe_operators.models.build import hierarchy_context

    folder = tmp_path_factory.mktemp("kinds")
    cfg = precond_config_from_dict({"kind": "neural_mg", "family": {"mesh": MESH}, "out": "s.pt"}, base_dir=folder)
    write_precond_checkpoint(cfg.out, SmootherNet(hidden=2, init_s=0.5).double(), cfg, [], {})
    fam = family(MESH)
    hier = hierarchy_context(fam.V, fam.bcs)
    torch.manual_seed(0)
    net = DCDMNet(hier.levels[0].n_operators, hier.n_levels, hier.levels[0].h, width=2, layers=1)
    net.init_laplacian(hier.levels[0].laplacian)
    dcfg = precond_config_from_dict({"kind": "dcdm", "family": {"mesh": MESH}, "out": "d.pt"}, base_dir=folder)
    write_precond_checkpoint(dcfg.out, net, dcfg, [], {})
    return {"neural_mg": cfg.out, "dcdm": dcfg.out}


def _spon_checkpoint(path) -> None:
    import firedrake as fd

    from fe_operators.models import SPON
    from fe_operators.models.build import context_from_spaces
    from fe_operators.train.checkpoint import model_payload, save_checkpoint

    V = fd.FunctionSpace(fd.UnitSquareMesh(4, 4), "CG", 1)
    ctx = context_from_spaces({"f": V}, V, lambda x: fd.DirichletBC(V, 0, "on_boundary"))
    model = SPON.from_context(ctx, ["f"], "mlp", hidden=[4])
    save_checkpoint(path, {"kind": "model", "model": model_payload(model), "spaces": {}})


# ----------------------------------------------------------------------------- item 3 (c)
def test_a_non_finite_training_loss_is_a_training_error(tmp_path, capsys):
    cfg = _config(tmp_path, kind="dcdm", family={"mesh": MESH, "samples": 1, "validation_samples": 1},
                  dcdm={"width": 2, "layers": 1, "ritz": 8, "combinations": 2, "smooth": 2, "batch": 4},
                  train={"steps": 6, "lr": 1e30, "log_every": 0}, out="dcdm.pt")
    assert main(["precond", "train", "--config", cfg]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "the loss became" in line and "lower train.lr (it is 1e+30)" in line and "nothing written" in line
    assert not (tmp_path / "dcdm.pt").exists()


# ----------------------------------------------------------------------------- item 3 (a): evaluate
@pytest.mark.parametrize("case, expected", [
    ("missing", r"no such file"),
    ("truncated", r"truncated or corrupt"),
    ("malicious", r"refused by torch\.load\(weights_only=True\).*nothing in it was run"),
    ("spon", r"holds a fe_operators\.models\.spon:SPON model, not a learned smoother \(kind neural_mg\); .*"
             r"kind: neural_mg"),
])
def test_evaluate_refuses_a_bad_model_file_before_any_solve(tmp_path, capsys, checkpoints, case, expected):
    path = tmp_path / "model.pt"
    if case == "truncated":
        data = open(checkpoints["neural_mg"], "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif case == "malicious":
        marker = tmp_path / "pwned"

        class Mkdir:
            def __reduce__(self):
                import os

                return (os.mkdir, (str(marker),))

        torch.save({"format": "fe_operators.checkpoint", "x": Mkdir()}, path)
    elif case == "spon":
        _spon_checkpoint(path)
    status = main(["precond", "evaluate", "--model", str(path), "--mesh", MESH])
    out, err = capsys.readouterr()
    assert status == 1
    line = _one_line(err)
    assert str(path) in line and re.search(expected, line), line
    assert out == ""  # refused before the table, the mesh and any KSP
    if case == "malicious":
        assert not (tmp_path / "pwned").exists()


def test_evaluate_names_the_kind_and_the_right_option(capsys, checkpoints):
    status = main(["precond", "evaluate", "--model", checkpoints["dcdm"], "--mesh", MESH, "--methods", "neural_mg"])
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert status == 1 and out == ""
    assert checkpoints["dcdm"] in line and "a DCDM network (kind dcdm)" in line and "--dcdm-model" in line
    assert "kind: neural_mg" in line

    status = main(["precond", "evaluate", "--dcdm-model", checkpoints["neural_mg"], "--mesh", MESH,
                   "--methods", "dcdm"])
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert status == 1 and out == ""
    assert checkpoints["neural_mg"] in line and "a learned smoother (kind neural_mg)" in line
    assert "precond evaluate --model" in line and "kind: dcdm" in line


def test_evaluate_needs_a_hierarchy_and_says_how_to_get_one(capsys, checkpoints):
    status = main(["precond", "evaluate", "--model", checkpoints["neural_mg"], "--mesh", "unitsquare:8"])
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert status == 1 and out == "" and "no level of a MeshHierarchy" in line
    assert "--mesh unitsquare:8/r2" in line and "neural_mg" in line and "gmg" in line
    assert "neural_amg" not in line.split("which")[1].split("need")[0]  # GAMG needs no hierarchy


@pytest.mark.parametrize("args, option", [
    (["--rtol", "-1"], "--rtol"), (["--rtol", "nan"], "--rtol"), (["--samples", "0"], "--samples"),
    (["--variance", "-2"], "--variance"), (["--methods", "neural_mg,foo"], "--methods"),
    (["--methods", "dcdm"], "--dcdm-model"),
])
def test_evaluate_refuses_bad_options_at_parse_time(capsys, args, option):
    assert main(["precond", "evaluate", "--mesh", MESH, *args]) == 2
    out, err = capsys.readouterr()
    assert option in err and out == ""


# ----------------------------------------------------------------------------- item 3 (a): scripts
def test_a_script_solving_with_neural_mg_and_a_dcdm_checkpoint_gets_a_typed_exception(checkpoints):
    from firedrake.petsc import PETSc

    from fe_operators.errors import ModelKindError

    fam = family(MESH)
    solver, _ = make_solver(fam, fam.sample_coefficient(np.random.default_rng(0)),
                            {**NEURAL_MG, "neuralmg_model": checkpoints["dcdm"]})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    cause = info.value.__cause__
    assert isinstance(cause, ModelKindError) and cause.found == "dcdm" and cause.expected == "neural_mg"
    text = str(cause)
    assert text.startswith("fe_operators.precond.NeuralMG: ") and checkpoints["dcdm"] in text
    assert "use it with DCDM" in text


def test_a_dcdm_under_plain_cg_is_refused_naming_fcg(checkpoints):
    from firedrake.petsc import PETSc

    fam = family(MESH)
    solver, _ = make_solver(fam, fam.sample_coefficient(np.random.default_rng(0)),
                            {**FCG, "ksp_type": "cg", "dcdm_model": checkpoints["dcdm"]})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    cause = info.value.__cause__
    assert isinstance(cause, PreconditionerSetupError)
    assert "ksp_type cg" in str(cause) and "ksp_type fcg" in str(cause)


def test_the_no_hierarchy_hint_is_worded_for_the_cli_and_python():
    import firedrake as fd

    from fe_operators.errors import NoHierarchyError
    from fe_operators.fem.transfer import level_prolongations

    with pytest.raises(NoHierarchyError) as info:
        level_prolongations(fd.FunctionSpace(fd.UnitSquareMesh(4, 4), "CG", 1))
    assert "--mesh unitsquare:16/r4" in str(info.value) and "load_mesh('unitsquare:16/r4')" in str(info.value)


# ----------------------------------------------------------------------------- item 3 (b): the runner
class _Raises:
    """A petsc4py Python PC whose set-up raises ``exc``."""

    def __init__(self, exc):
        self.exc = exc

    def setUp(self, pc):
        raise self.exc

    def apply(self, pc, x, y):  # pragma: no cover - never reached
        x.copy(y)


def _solve_with(exc):
    """A KSP solve on a 4 x 4 diagonal matrix whose Python PC raises ``exc`` in its set-up."""
    from petsc4py import PETSc

    csr = (np.arange(5, dtype=PETSc.IntType), np.arange(4, dtype=PETSc.IntType), np.full(4, 2.0))
    A = PETSc.Mat().createAIJ([4, 4], csr=csr, comm=PETSc.COMM_SELF)
    ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
    ksp.setOperators(A)
    ksp.getPC().setType("python")
    ksp.getPC().setPythonContext(_Raises(exc))
    b, x = A.createVecs()
    b.set(1.0)
    ksp.solve(b, x)


@pytest.mark.parametrize("exc, status, text", [
    (ValueError("the matrix is odd: fix it"), 1, "error: the matrix is odd: fix it"),
    (FileNotFoundError(2, "No such file or directory", "x.pt"), 1, "No such file or directory: 'x.pt'"),
])
def test_the_runner_reports_a_petsc_error_as_its_python_cause(capsys, exc, status, text):
    assert run_command("precond", lambda argv: _solve_with(exc), []) == status
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("fe-operators precond: error: ") and text in line


def test_the_runner_reports_a_config_error_cause_with_status_2(capsys):
    from fe_operators.errors import ConfigError

    assert run_command("precond", lambda argv: _solve_with(ConfigError("train.lr", "too big")), []) == 2
    assert "train.lr: too big" in _one_line(capsys.readouterr().err)


def test_a_bare_petsc_error_of_bad_input_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    from petsc4py import PETSc

    def unknown_type(argv):
        PETSc.KSP().create(comm=PETSc.COMM_SELF).setType("no_such_krylov_method")

    assert run_command("precond", unknown_type, []) == 1
    line = _one_line(capsys.readouterr().err)
    assert "PETSc error 86 (unknown type name in the solver options)" in line
    with pytest.raises(PETSc.Error) as info:  # a TypeError in a callback is a bug: the traceback stays
        run_command("precond", lambda argv: _solve_with(TypeError("a bug")), [])
    assert isinstance(info.value.__cause__, TypeError)


# ----------------------------------------------------------------------------- out, checked first
def test_train_refuses_a_directory_as_out_before_training(tmp_path, capsys):
    (tmp_path / "smoother.pt").mkdir()
    cfg = _config(tmp_path, kind="neural_mg", family={"mesh": MESH, "samples": 1}, train={"steps": 2},
                  out="smoother.pt")
    assert main(["precond", "train", "--config", cfg]) == 1
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert "smoother.pt is a directory" in line and "name the checkpoint file" in line
    assert "training operators" not in out and "step" not in out  # nothing was trained


# ----------------------------------------------------------------------------- item 6
def test_a_smoother_worse_than_l1_jacobi_is_refused_and_allow_worse_writes_it(tmp_path, capsys):
    cfg = _config(tmp_path, kind="neural_mg", family={"mesh": MESH, "samples": 1, "validation_samples": 1},
                  smoother={"hidden": 2, "sweeps": 1}, train={"steps": 3, "lr": 1e30, "log_every": 0},
                  out="smoother.pt")
    assert main(["precond", "train", "--config", cfg]) == 1
    line = _one_line(capsys.readouterr().err)
    found = re.search(r"V-cycle convergence factor: learned (\S+), classical (\S+)\)", line)
    assert found and float(found.group(1)) > float(found.group(2)), line
    assert "l1-Jacobi" in line and "--allow-worse" in line and "nothing written to" in line
    assert not (tmp_path / "smoother.pt").exists()

    assert main(["precond", "train", "--config", cfg, "--allow-worse"]) == 0
    assert (tmp_path / "smoother.pt").exists()
    assert "written anyway" in capsys.readouterr().out
