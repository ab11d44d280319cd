"""Per-sample digests: the integrity check of dataset files and generation journals.

Every sample is written with one digest per field (a SHA-256 of the field's bytes, cut to
:data:`DIGEST_SIZE` bytes) and verified whenever it is read: a sample whose bytes changed
after it was written is refused, naming the file, the sample and the field.  HDF5's chunk
checksums cannot do this (a chunk holds up to 1024 rows; uncompressed chunks carry none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from fe_operators.data.layout import space_key
from fe_operators.errors import DatasetFileError, NonFiniteError

__all__ = ["DIGEST_SIZE", "check_digests", "digest_fields", "find_digest_mismatch", "non_finite_error",
           "sample_digests"]

DIGEST_SIZE = 16  # bytes kept of a SHA-256 per sample and field
_DIGEST_PREFIX = b"fe_operators sample digest\0"


def digest_fields(input_names: Sequence[str]) -> list[str]:
    """The fields a sample's digests cover, in order: ``inputs/<name>`` in channel order, ``output``."""
    return [space_key(n) for n in input_names] + [space_key(None)]


def sample_digests(indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per-sample, per-field digests of the rows of a batch.

    The digest of sample ``i``'s field ``key`` is the first 16 bytes of the SHA-256 of
    ``b"fe_operators sample digest\\0"``, ``i`` as little-endian int64, ``key`` in UTF-8
    and a NUL byte, and the sample's values as little-endian float64 (the on-disk dtype)
    in C order.  The index and the key are hashed too, so a row copied onto another
    sample, or one field's values put in another's place, do not match either.  (SHA-256
    rather than BLAKE2b: CPUs with SHA instructions hash 2-3 times faster with it.)

    Parameters
    ----------
    indices
        Sample indices, ``(k,)``.
    fields
        ``(key, array)`` pairs, each array ``(k, ...)`` (batch first).

    Returns
    -------
    numpy.ndarray
        ``(k, len(fields), DIGEST_SIZE)`` uint8.
    """
    idx = np.ascontiguousarray(indices, dtype="<i8").reshape(-1)
    rows = [(key.encode() + b"\0", np.ascontiguousarray(a, dtype="<f8").reshape(idx.size, -1))
            for key, a in fields]
    out = bytearray()
    for k in range(idx.size):  # hashlib runs over each row in C; this loop is per sample read
        head = _DIGEST_PREFIX + idx[k].tobytes()
        for key, a in rows:
            h = hashlib.sha256(head + key)
            h.update(a[k])
            out += h.digest()[:DIGEST_SIZE]
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(idx.size, len(rows), DIGEST_SIZE)


def non_finite_error(path: str, sample: int, field: str, values: np.ndarray) -> NonFiniteError:
    """The error for a stored sample with NaN or infinite values in ``field``."""
    count = int((~np.isfinite(values)).sum())
    return NonFiniteError(
        f"{path}: sample {sample} holds {count} NaN or infinite value(s) in {field}; the file is damaged "
        "(generation never stores such samples): regenerate it with fe-operators generate ... --overwrite"
    )


def find_digest_mismatch(indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]],
                         stored: np.ndarray) -> tuple[int, int] | None:
    """The first ``(row, field)`` position whose values do not hash to ``stored``, or ``None``.

    Parameters
    ----------
    indices, fields
        As for :func:`sample_digests`.
    stored
        The digests written with the rows, ``(k, len(fields), DIGEST_SIZE)`` (any other
        shape mismatches at ``(0, 0)``).
    """
    got = sample_digests(indices, fields)
    if stored.shape != got.shape:
        return (0, 0)
    bad = np.argwhere((got != stored).any(axis=2))
    return None if bad.size == 0 else (int(bad[0, 0]), int(bad[0, 1]))


def check_digests(path: str, indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]],
                   stored: np.ndarray) -> None:
    """Raise unless the rows in ``fields`` hash to ``stored`` (see :func:`sample_digests`)."""
    found = find_digest_mismatch(indices, fields, stored)
    if found is None:
        return
    k, j = found
    key, values = fields[j][0], np.asarray(fields[j][1][k])
    sample = int(indices[k])
    if not np.isfinite(values).all():
        raise non_finite_error(path, sample, key, values)
    raise DatasetFileError(
        f"{path}: sample {sample} is damaged: its {key} values do not match the digest written with them "
        "(the file was changed after it was written); regenerate it with fe-operators generate ... "
        "--overwrite, or restore a good copy"
    )
