"""Creating torch sparse CSR tensors without torch's "beta" warning.

torch warns once per process, on the first sparse CSR tensor it creates, that "Sparse
CSR tensor support is in beta".  fe_operators relies on CSR operators on purpose (mesh
operators, graph adjacencies, input maps, checkpoints holding them), so the warning says
nothing to a user; it is silenced where the library creates CSR tensors, with
:func:`csr_beta_warning_silenced` around the creation, never by a global filter.

Nothing here imports Firedrake.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["csr_beta_warning_silenced"]

#: the start of torch's warning
BETA_WARNING = "Sparse CSR tensor support is in beta"


@contextlib.contextmanager
def csr_beta_warning_silenced() -> Iterator[None]:
    """Ignore torch's "Sparse CSR tensor support is in beta" warning inside the block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=BETA_WARNING, category=UserWarning)
        yield
