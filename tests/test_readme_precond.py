"""The README's learned-preconditioner example runs as shown: solver parameters only."""

from __future__ import annotations

import pathlib
import re
import shutil

import numpy as np

import firedrake as fd

from precond_helpers import trained_smoother  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith("# solve_with_learned_pc.py")]
    return block


def test_readme_learned_preconditioner(tmp_path, monkeypatch, trained_smoother):
    shutil.copy(trained_smoother[0], tmp_path / "smoother.pt")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_example(), "README.md", "exec"), ns)  # raises ConvergenceError if the solve fails
    uh, V = ns["uh"], ns["V"]
    ref = fd.Function(V)
    u, v = ns["u"], ns["v"]
    fd.solve(fd.inner(ns["k"] * fd.grad(u), fd.grad(v)) * fd.dx == v * fd.dx, ref, bcs=ns["bcs"],
             solver_parameters={"ksp_type": "preonly", "pc_type": "cholesky"})
    assert np.abs(uh.dat.data_ro - ref.dat.data_ro).max() <= 1e-6 * np.abs(ref.dat.data_ro).max()
    assert V.dim() == 66049
