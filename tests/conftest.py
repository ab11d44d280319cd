"""Shared test set-up: single-threaded OpenMP for Firedrake, deterministic torch."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys  # noqa: E402

# Firedrake hands sys.argv to PETSc at import; keep pytest's flags away from it.
_argv, sys.argv = sys.argv, sys.argv[:1]
import firedrake  # noqa: E402,F401
sys.argv = _argv

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
