"""A full disk, recognised: which errors of a write mean the disk or the quota is full.

OSError carries the errno; HDF5 (through h5py) and PETSc may only say it in their message,
or not at all, in which case the space left on the disk decides.  Used by the dataset
writer, the journal and the generation loop, so that a full disk is one clear message and
a resumable journal (see :mod:`fe_operators.data.generation`).
"""

from __future__ import annotations

import errno
import os
import shutil

__all__ = ["disk_full", "no_space", "no_space_error"]

#: errno values of a full disk or quota
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
#: a write that fails with less free space than this left on its disk failed for want of space
_FULL_BYTES = 16 << 20


def no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full.

    ``OSError`` carries the errno; HDF5 (through h5py) and PETSc may only put it in their
    message (``errno = 28``, ``No space left on device``).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        text = str(exc)
        if any(f"errno = {e}," in text or os.strerror(e) in text for e in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full(exc: BaseException, path: str | os.PathLike) -> bool:
    """Whether a write to ``path`` that raised ``exc`` failed because its disk is full.

    By the error itself (:func:`no_space`), or, for PETSc's and HDF5's errors that do not
    say why a write failed, by the space left on the disk (to be asked before the failed
    file is deleted).
    """
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        return False
    if no_space(exc):
        return True
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < _FULL_BYTES
    except OSError:
        return False


def no_space_error(path: str | os.PathLike) -> OSError:
    """``OSError(ENOSPC)`` naming ``path``."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
