"""The learned multigrid under ``mpiexec -n 2``: distributed mesh, parallel Vecs and Mats."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fe_operators.parallel import mpiexec_command, mpiexec_env
from precond_helpers import trained_smoother  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")
SPEC = "unitsquare:8/r3"


def _two_ranks(model: str, methods: list[str]) -> dict[str, dict]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(mpiexec_env(), PYTHONPATH=path)
    script = str(ROOT / "tests" / "precond_mpi_solve.py")
    cmd = mpiexec_command(2, [sys.executable, script, SPEC, model, *methods])
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # lines may carry a terminal colour reset ("\x1b[0m") written by another rank's logger
    runs = [json.loads(m.group(0)) for m in re.finditer(r"\{.*\}", proc.stdout)]
    assert [r["method"] for r in runs] == methods, proc.stdout  # printed once each, by rank 0
    return {r["method"]: r for r in runs}


def test_learned_multigrid_on_two_ranks_converges_like_on_one(trained_smoother):
    from precond_mpi_solve import solve

    model = str(trained_smoother[0])
    two = _two_ranks(model, ["neural_mg", "neural_amg"])
    one = solve(SPEC, model, "neural_mg")
    par = two["neural_mg"]
    assert par["ranks"] == 2 and 0 < par["local_rows"] < par["rows"] == one["rows"]  # really distributed
    for run in (one, par, two["neural_amg"]):
        assert run["reason"] > 0 and run["residual"] <= 1e-8
    assert par["its"] <= one["its"] + 1
    assert abs(par["u_norm"] - one["u_norm"]) <= 1e-7 * one["u_norm"]


def test_rediscretised_coarse_operators_on_two_ranks(trained_smoother):
    """The cell averages and coarse assemblies are parallel: on a P1 problem they give the Galerkin
    operators, hence the Galerkin iterations and solution, on two ranks as on one."""
    from precond_mpi_solve import solve

    model = str(trained_smoother[0])
    two = _two_ranks(model, ["neural_mg", "neural_mg_rediscretise"])
    one = solve(SPEC, model, "neural_mg_rediscretise")
    par = two["neural_mg_rediscretise"]
    assert par["ranks"] == 2 and 0 < par["local_rows"] < par["rows"]
    assert par["reason"] > 0 and par["residual"] <= 1e-8
    assert par["its"] == two["neural_mg"]["its"] and one["its"] <= par["its"] + 1
    assert abs(par["u_norm"] - one["u_norm"]) <= 1e-7 * one["u_norm"]
