"""Shared test set-up: single-threaded OpenMP for Firedrake, deterministic torch."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from fe_operators.petsc_argv import import_firedrake  # noqa: E402

import_firedrake()  # without pytest's flags (Firedrake hands sys.argv to PETSc at import)

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
