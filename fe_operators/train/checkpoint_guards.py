"""What a checkpoint is checked for before it is written or trusted.

* :func:`check_plain` — a payload holds only tensors and plain Python data, so it loads
  with ``torch.load(weights_only=True)``;
* :func:`torch_refusal` — what ``torch.load(weights_only=True)`` refused, told apart
  from a corrupt file;
* :func:`check_sizes` — the network a stored config describes against the stored
  weights and the memory available, before the network is allocated.

:mod:`fe_operators.train.checkpoint` calls them; nothing here imports Firedrake.
"""

from __future__ import annotations

import collections
import os
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from fe_operators.errors import CheckpointError
from fe_operators.limits import format_bytes, over_memory
from fe_operators.quoting import short

__all__ = ["check_plain", "torch_refusal", "check_sizes"]


def check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` is tensors and plain Python data only."""
    if obj is None or type(obj) in (str, bool, int, float) or isinstance(obj, torch.Tensor):
        return
    if type(obj) in (dict, collections.OrderedDict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: checkpoint keys must be str or int, got {type(k).__name__} {k!r}")
            check_plain(v, f"{where}.{k}")
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: a checkpoint holds only tensors and str/int/float/bool/None/list/tuple/dict, "
        f"got {type(obj).__module__}.{type(obj).__qualname__}"
    )


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a torch file: ``data.pkl`` of a zip file, else the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            return z.read(names[0]) if names else b""
    return path.read_bytes()


def torch_refusal(text: str, path: Path) -> str | None:
    """What ``torch.load(weights_only=True)`` refused, if it refused a well-formed pickle (else None).

    torch's message names a forbidden global (a function or class: code), or an opcode
    its restricted unpickler does not allow.  The latter is also what garbage looks
    like, so an opcode counts as refused only if the stream is a well-formed pickle
    (parsed with :mod:`pickletools`, which executes nothing).
    """
    found = re.search(r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+ whose module \S+ is blocked|"
                      r"Unsupported class \S+)", text)
    if found:
        return f"it holds pickled objects other than tensors and plain data ({found.group(1)})"
    found = re.search(r"Unsupported operand (\d+)", text)
    if not found:
        return None
    try:
        ops = list(pickletools.genops(_pickle_bytes(path)))
    except Exception:  # not a well-formed pickle: corrupt, not refused
        return None
    if not ops or ops[-1][0].name != "STOP":
        return None
    op = pickletools.code2op.get(chr(int(found.group(1))))
    return (f"a well-formed pickle with opcode {op.name if op else found.group(1)}, which torch's restricted "
            "unpickler does not accept (not a file written by save_checkpoint)")


def check_sizes(path: str | os.PathLike, cls: type, ref: str, config: Any, state: Any) -> None:
    """Check the model the stored config describes against the stored weights, before building it.

    The network is built on PyTorch's ``meta`` device, which allocates nothing: each of
    its parameters must be stored with the same shape (a config altered to ``hidden:
    [1000000, 1000000]`` would otherwise allocate terabytes before ``load_state_dict``
    noticed), and its parameters and buffers must fit in the memory available.  A class
    that cannot be built on the meta device is not checked here (``load_state_dict``
    still checks the shapes, after building it).

    Raises
    ------
    CheckpointError
        Naming the first parameter that is missing or of another shape, or the size.
    """
    try:
        with torch.device("meta"):
            meta = cls.from_config(config)
        params = list(meta.named_parameters())
        nbytes = sum(t.numel() * t.element_size() for t in [*meta.parameters(), *meta.buffers()])
    except Exception:  # a bad config fails again, with its message, when the network is built for real
        return
    if not isinstance(state, Mapping):
        raise CheckpointError(path, f"malformed model.state_dict entry: expected a mapping, got "
                                    f"{type(state).__name__}")
    for name, param in params:
        key = f"network.{name}"
        stored = state.get(key)
        if not isinstance(stored, torch.Tensor):
            raise CheckpointError(path, f"the stored weights lack parameter {key} of {ref} as its stored config "
                                        "describes it; the file is damaged or was altered")
        if tuple(stored.shape) != tuple(param.shape):
            raise CheckpointError(
                path, f"parameter {key} is stored with shape {tuple(stored.shape)}, but the stored config of {ref} "
                      f"makes it {short(tuple(param.shape), 60)} (and the network {format_bytes(nbytes)}); the file "
                      "is damaged or was altered")
    too_large = over_memory(nbytes, f"{ref} as its stored config describes it",
                            "load it on a machine with more memory")
    if too_large:
        raise CheckpointError(path, too_large)
