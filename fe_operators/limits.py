"""Size guards: refuse an allocation that cannot fit before making it.

A configuration value, a command-line count or a checkpoint's stored config can ask for
arrays far larger than the machine holds (``hidden: [100000, 100000]``, ``dcdm.ritz:
1e8``, a billion samples).  Left alone, that ends in a traceback from the allocator, in
the out-of-memory killer, or in a process that swaps for minutes.  Code that is about to
allocate something whose size a user chose estimates its bytes first and calls
:func:`check_allocation`, which compares the estimate with :func:`available_memory` and
raises a one-line error that names the key, the estimate, the memory available and the
fix.

The memory available is, in this order: the environment variable
``FE_OPERATORS_MAX_BYTES`` if set (a number of bytes such as ``2e9`` or ``512MiB``; tests
set it low, a user may set it to allow more than the guard's estimate of free memory),
else Linux's ``MemAvailable`` (``/proc/meminfo``), lowered to what the process's cgroup
still allows where a cgroup limit is set, else ``psutil``'s available memory, else the
free physical pages (``os.sysconf``).  Where none is known, nothing is refused.

Nothing here imports torch, numpy or Firedrake.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from fe_operators.errors import ConfigError, MemoryLimitError
from fe_operators.quoting import short

__all__ = ["MAX_BYTES_ENV", "available_memory", "format_bytes", "over_memory", "check_allocation"]

#: environment variable overriding the memory the guards allow (bytes, e.g. "2e9" or "512MiB")
MAX_BYTES_ENV = "FE_OPERATORS_MAX_BYTES"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _parse_bytes(text: str) -> int | None:
    """``"2e9"``, ``"512MiB"``, ``"4 GB"`` as a number of bytes (None if not one)."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if found is None or found.group(2).lower() not in _UNITS:
        return None
    value = float(found.group(1)) * _UNITS[found.group(2).lower()]
    return int(value) if math.isfinite(value) and value >= 0 else None


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None off Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) and the like: None


def _cgroup_available() -> int | None:
    """What the process's cgroup still lets it allocate (None without a cgroup limit)."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # cgroup v1 says "no limit" with a huge number
            return max(0, limit - (_read_int(usage_file) or 0))
    return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation may take now (see the module docstring for the sources).

    Returns
    -------
    int or None
        None when no source is available (then the guards refuse nothing).

    Raises
    ------
    ConfigError
        ``FE_OPERATORS_MAX_BYTES`` is set but is not a number of bytes.
    """
    env = os.environ.get(MAX_BYTES_ENV)
    if env is not None and env.strip():
        value = _parse_bytes(env)
        if value is None:

            raise ConfigError(MAX_BYTES_ENV, f"expected a number of bytes such as 2e9 or 512MiB, got {short(env)} "
                                             "(environment variable); unset it or fix it")
        return value
    found = _meminfo_available()
    if found is None:
        try:
            import psutil  # optional

            found = int(psutil.virtual_memory().available)
        except Exception:  # not installed, or no answer on this platform
            found = None
    if found is None:
        try:
            found = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            found = None
    cgroup = _cgroup_available()
    if cgroup is not None:
        found = cgroup if found is None else min(found, cgroup)
    return found


def format_bytes(nbytes: float) -> str:
    """A byte count in binary units with three significant digits: ``"215 GiB"``, ``"3.05 MiB"``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.3g} {unit}"


def over_memory(nbytes: float, what: str, fix: str) -> str | None:
    """Why an allocation of ``nbytes`` cannot be made here, or None if it fits.

    Parameters
    ----------
    nbytes
        The estimated size of what is about to be allocated.
    what
        What it is, for the message, e.g. ``"the Lanczos basis of 100000000 Ritz vectors"``.
    fix
        What the user should do, e.g. ``"lower dcdm.ritz"``.
    """
    available = available_memory()
    if available is None or nbytes <= available:
        return None
    return (f"{what} would take {format_bytes(nbytes)}, more than the {format_bytes(available)} of memory "
            f"available; {fix}")


def check_allocation(nbytes: float, what: str, key: str | None = None, *, fix: str,
                     source: "str | os.PathLike[str] | None" = None) -> None:
    """Raise unless an allocation of about ``nbytes`` fits in the memory available.

    Parameters
    ----------
    nbytes
        Estimated size in bytes of what is about to be allocated.
    what
        What it is (for the message).
    key
        The configuration key (dotted, e.g. ``"model.hidden"``) or command-line option
        (``"--samples"``) that chose the size, if any.
    fix
        What to do about it (for the message).
    source
        The configuration file, if the size came from one.

    Raises
    ------
    ConfigError
        With ``key``: naming the key, the estimate, the memory available and the fix.
    MemoryLimitError
        Without ``key``.
    """

    reason = over_memory(nbytes, what, fix)
    if reason is None:
        return
    if key:
        raise ConfigError(key, reason, source)
    raise MemoryLimitError(reason)
