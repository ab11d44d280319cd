"""Ensemble-parallel generation: ``mpiexec -n 2`` gives the serial run's samples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fe_operators.data import FEFile
from fe_operators.data import generate_dataset
from fe_operators.parallel import mpiexec_command, mpiexec_env

ROOT = Path(__file__).resolve().parents[1]


def _mpirun(*args: str) -> subprocess.CompletedProcess:
    """``mpiexec -n 2 fe-operators generate ARGS`` with tests/ importable."""
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(mpiexec_env(), PYTHONPATH=path)
    exe = str(Path(sys.executable).parent / "fe-operators")
    cmd = mpiexec_command(2, [exe, "generate", *args])
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=400)


def test_two_ranks_produce_the_serial_samples(tmp_path):
    serial, parallel = tmp_path / "serial.h5", tmp_path / "parallel.h5"
    common = ["darcy", "--mesh", "unitsquare:16", "--samples", "11", "--seed", "5", "--coefficient", "lognormal"]
    proc = _mpirun(*common, "--out", str(parallel), "--chunk-size", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    generate_dataset("darcy", "unitsquare:16", 11, serial, seed=5, params={"coefficient": "lognormal"},
                     progress=False)
    got, want = FEFile(parallel), FEFile(serial)
    assert got.complete and got.provenance["runs"][-1]["ranks"] == 2
    (gi, go), (wi, wo) = got.read(), want.read()
    assert np.array_equal(gi["a"], wi["a"])
    assert np.allclose(go, wo, rtol=0, atol=1e-12)


def test_a_failure_on_another_rank_stops_every_rank(tmp_path):
    out = tmp_path / "fail.h5"
    proc = _mpirun("test_data_problems:SmallPoisson", "--mesh", "unitsquare:4", "--samples", "10",
                   "--out", str(out), "--fail-sample", "5", "--chunk-size", "2", "--quiet")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "sample 5 failed" in errors[0] and "PETSc reason -3" in errors[0]
    f = FEFile(out)
    assert not f.done[5] and f.done[:4].all()
