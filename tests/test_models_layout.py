"""The layout of issue 14: one sparse package, processors registered by their package.

Each check runs in a fresh interpreter, so what an import pulls in is not hidden by
modules an earlier test loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (a failed assertion fails the test)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_sparse_loads_neither_firedrake_nor_petsc_nor_numba():
    out = _fresh(
        "import sys, fe_operators.sparse as s\n"
        "print(sorted(m for m in ('firedrake', 'petsc4py.PETSc', 'numba') if m in sys.modules))\n"
        "s.csr_quadratic  # the compiled kernels load on first use of their names\n"
        "print('numba' in sys.modules, 'firedrake' in sys.modules)\n")
    assert out.split("\n")[:2] == ["[]", "True False"]


def test_importing_models_loads_no_firedrake():
    assert _fresh("import sys, fe_operators.models\nprint('firedrake' in sys.modules)").strip() == "False"


@pytest.mark.parametrize("module", ["fe_operators.models.processors.base", "fe_operators.models.spon"])
def test_in_tree_processors_are_registered_by_importing_any_models_module(module):
    """No import list elsewhere: the processors package imports its processor modules."""
    out = _fresh(f"import {module}\nfrom fe_operators.models.processors import PROCESSORS\n"
                 "print({n: c.__module__ for n, c in sorted(PROCESSORS.items())})")
    assert out.strip() == str({"gnn": "fe_operators.models.processors.gnn",
                               "hierarchical": "fe_operators.models.processors.hierarchical",
                               "mlp": "fe_operators.models.processors.mlp",
                               "multigrid": "fe_operators.models.processors.multigrid"})


def test_sparse_map_round_trip_through_the_sparse_package():
    import numpy as np
    import scipy.sparse as sp
    import torch

    from fe_operators.sparse import SparseMap, scipy_to_torch, spmm

    A = sp.random(6, 4, density=0.5, random_state=0, format="csr")
    m = SparseMap.from_scipy(A)
    x = torch.randn(4, 3, dtype=torch.float64)
    assert np.allclose(spmm(m, x).numpy(), A @ x.numpy(), rtol=0, atol=1e-14)
    assert abs(m.transpose().to_scipy() - A.T).max() == 0
    assert torch.equal(scipy_to_torch(A).to_dense(), torch.from_numpy(A.toarray()))
