"""The names of a dataset file's HDF5 layout (described in :mod:`fe_operators.data.h5`).

A leaf shared by the reader (:mod:`~fe_operators.data.h5`), the writer
(:mod:`~fe_operators.data.h5_writer`) and the digests (:mod:`~fe_operators.data.digests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FORMAT", "FORMAT_VERSION", "GROUP", "KIND_STEADY", "KIND_TRAJECTORIES", "ROW_CHUNK_BYTES",
           "STATE_KEY", "TRAJECTORY_FIELDS", "checkpoint_name", "dof_shape", "file_kind", "space_key"]

FORMAT = "fe_operators.dataset"
FORMAT_VERSION = 2  # 2: per-sample digests
GROUP = "fe_operators"
ROW_CHUNK_BYTES = 1 << 16  # HDF5 chunk size of the sample arrays

#: the ``kind`` attribute of the group: steady samples (inputs -> output; files without the
#: attribute are steady) or trajectories of a time-dependent family (parameters -> states)
KIND_STEADY = "steady"
KIND_TRAJECTORIES = "trajectories"
#: a trajectory file's per-sample fields (datasets under the group), in digest order
TRAJECTORY_FIELDS = ("params", "states")
#: the key of a trajectory file's state space (its group under ``spaces/``, its probe)
STATE_KEY = "state"


def file_kind(attrs: Mapping[str, Any]) -> str:
    """The kind of a dataset file from its group's attributes (``"steady"`` when unset)."""
    kind = attrs.get("kind", KIND_STEADY)
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def space_key(name: str | None) -> str:
    """The key of a space in the file: ``"inputs/<name>"`` for inputs, ``"output"`` for ``None``."""
    return "output" if name is None else f"inputs/{name}"


def checkpoint_name(key: str) -> str:
    """Name of the numbering-probe Function of space ``key`` inside the CheckpointFile."""
    return "fe_operators_numbering_" + key.replace("/", "_")


def dof_shape(info: Mapping[str, Any]) -> tuple[int, ...]:
    """DOF-tensor shape of one sample from a SpaceInfo dict (see :class:`SpaceInfo`)."""
    n = int(info["n_nodes"])
    return (n,) if not info["value_shape"] else (n, int(info["ncomp"]))
