"""Self-describing checkpoints: one file, plain data, atomic writes, safe loading.

A checkpoint is one ``torch.save`` file of a dict holding only tensors and plain Python
values (``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples, dicts), so it
loads with ``torch.load(weights_only=True)`` and never unpickles code.  Layout (format
version 1)::

    format                "fe_operators.checkpoint"
    format_version        1
    fe_operators_version  package version that wrote it
    torch_version         torch version that wrote it
    kind                  "last" | "best" | "model"
    model
      class               "package.module:ClassName" (imported by name on load)
      config              JSON-able constructor config (model.config; from_config(config))
      state_dict          weights and buffers
    normalizers
      input               None | {"type": "single", "state": {...}} | {"type": "by_name", "state": {name: {...}}}
      output              None | {"type": "single", "state": {...}}
    spaces                {"inputs/<name>": SpaceInfo dict, ..., "output": SpaceInfo dict}
    run                   None, or plain data on the run: {"config": resolved run
                          configuration, "dataset": {"path", "numbering"}} from the CLI
    progress              {"epoch": completed epochs, "step": optimizer steps,
                           "best": {"metric", "value", "epoch"}} (run checkpoints)
    training              None (best.pt), or for resuming (last.pt):
      optimizer, scheduler  their state_dicts
      rng                 {"torch", "cuda", "numpy", "python", "sampler", "loader"} states
      trainer             epoch, step, batches_done, epoch_start_sampler_state,
                          epoch_loss_sum, epoch_samples, epoch_time, elapsed,
                          best, history (the metric rows)

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then
renamed over the target with ``os.replace``: a crash mid-write leaves the previous file
intact.  :func:`load_model` rebuilds model, normalizers and metadata without the script
that trained the model; the model class must be importable (on ``sys.path``), a
``torch.nn.Module`` subclass, and offer ``from_config`` (the contract of
``fe_operators.models``: a JSON-able ``config`` property and a ``from_config``
classmethod).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from fe_operators.data.dataset import UnitGaussianNormalizer
from fe_operators.errors import CheckpointError, SpaceMismatchError
from fe_operators.train.normalized import InputNormalizer, Inputs, physical_forward

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ConfigurableModel",
    "LoadedModel",
    "atomic_write",
    "save_checkpoint",
    "read_checkpoint",
    "model_payload",
    "normalizer_payload",
    "normalizers_from_payload",
    "model_class_path",
    "import_model_class",
    "load_model",
    "space_dicts",
    "check_spaces",
]

FORMAT = "fe_operators.checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format_version", "fe_operators_version", "kind", "model", "normalizers", "spaces")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@runtime_checkable
class ConfigurableModel(Protocol):
    """What a checkpointable model offers: a JSON-able ``config`` and ``from_config``."""

    @property
    def config(self) -> dict[str, Any]:
        """Constructor configuration (JSON-able)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ConfigurableModel":
        """Rebuild the model (with fresh weights) from :attr:`config`."""


# ----------------------------------------------------------------------------- writing
def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically: temporary file in the same folder, fsync, ``os.replace``.

    Parameters
    ----------
    path
        The target file (its folder must exist).
    write
        Writes the whole content to the binary file object it is given.

    Notes
    -----
    If ``write`` raises (or the process dies) the target keeps its previous content;
    the temporary file is removed when the failure is an exception.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` is tensors and plain Python data only."""
    if obj is None or type(obj) in (str, bool, int, float) or isinstance(obj, torch.Tensor):
        return
    if type(obj) in (dict, collections.OrderedDict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: checkpoint keys must be str or int, got {type(k).__name__} {k!r}")
            _check_plain(v, f"{where}.{k}")
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: a checkpoint holds only tensors and str/int/float/bool/None/list/tuple/dict, "
        f"got {type(obj).__module__}.{type(obj).__qualname__}"
    )


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically (``format`` and versions are added).

    Parameters
    ----------
    path
        Target file, e.g. ``run/last.pt``.
    payload
        The layout of the module docstring, without ``format``, ``format_version``,
        ``fe_operators_version`` and ``torch_version``.

    Raises
    ------
    TypeError
        The payload holds something other than tensors and plain data (it would not
        load with ``weights_only=True``); the message names the entry.
    """
    from fe_operators import __version__

    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fe_operators_version": __version__,
        "torch_version": str(torch.__version__),
        **payload,
    }
    _check_plain(data, "checkpoint")
    atomic_write(path, lambda f: torch.save(data, f))


def model_class_path(model: torch.nn.Module) -> str:
    """The ``"module:QualName"`` reference of ``model``'s class, checked to be importable.

    Raises
    ------
    TypeError
        The class lives in ``__main__`` or inside a function, or lacks ``config`` /
        ``from_config``, so a checkpoint could not rebuild it.
    """
    cls = type(model)
    ref = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise TypeError(
            f"model class {ref} cannot be re-imported from a checkpoint; define it in an importable "
            "module (a file on sys.path), not in a script or a function"
        )
    if not isinstance(model, ConfigurableModel):
        raise TypeError(f"model class {ref} needs a JSON-able `config` property and a `from_config` classmethod")
    return ref


def model_payload(model: torch.nn.Module) -> dict[str, Any]:
    """The ``model`` entry of a checkpoint: class reference, config and ``state_dict``.

    Raises
    ------
    TypeError
        The model is not checkpointable (see :func:`model_class_path`) or its config is
        not JSON-able.
    """
    ref = model_class_path(model)
    config = model.config
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the config of {ref} is not JSON-able: {exc}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"class": ref, "config": config, "state_dict": state}


def normalizer_payload(normalizer: InputNormalizer) -> dict[str, Any] | None:
    """A normalizer (one, a mapping name -> one, or None) as plain checkpoint data."""
    if normalizer is None:
        return None
    if isinstance(normalizer, UnitGaussianNormalizer):
        return {"type": "single", "state": {k: v.detach().cpu() for k, v in normalizer.state_dict().items()}}
    return {"type": "by_name", "state": {n: normalizer_payload(m)["state"] for n, m in normalizer.items()}}


def normalizers_from_payload(payload: Mapping[str, Any] | None) -> InputNormalizer:
    """Inverse of :func:`normalizer_payload`."""
    if payload is None:
        return None
    if payload["type"] == "single":
        return UnitGaussianNormalizer.from_state_dict(payload["state"])
    if payload["type"] == "by_name":
        return {n: UnitGaussianNormalizer.from_state_dict(s) for n, s in payload["state"].items()}
    raise ValueError(f"unknown normalizer type {payload['type']!r}")


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint file with ``torch.load(weights_only=True)`` on the CPU.

    Raises
    ------
    CheckpointError
        The file is missing, not a torch file, truncated or corrupt, holds pickled code,
        is not an fe_operators checkpoint, or was written by a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a regular file")
    try:
        with warnings.catch_warnings():  # a corrupt file can look like an odd pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = re.search(r"(Unsupported global: GLOBAL \S+)", text)
        if detail:
            raise CheckpointError(path, "refused by torch.load(weights_only=True): it holds pickled objects other "
                                        f"than tensors and plain data ({detail.group(1)})") from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        why = detail.group(1).strip() if detail else type(exc).__name__
        raise CheckpointError(path, f"cannot be read, the file is truncated or corrupt ({why})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"cannot be read, the file is truncated or corrupt ({type(exc).__name__}: "
                                    f"{first})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(path, "not an fe_operators checkpoint (no 'format' entry "
                                    f"{FORMAT!r}); was it written by save_checkpoint?")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(path, f"incomplete fe_operators checkpoint: missing {', '.join(missing)}")
    version = data["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            path, f"format version {version!r} written by fe_operators {data['fe_operators_version']}; this "
                  f"fe_operators reads up to version {FORMAT_VERSION}: upgrade fe_operators")
    model = data["model"]
    if not isinstance(model, dict) or not {"class", "config", "state_dict"} <= set(model):
        raise CheckpointError(path, "the 'model' entry needs 'class', 'config' and 'state_dict'")
    return data


def import_model_class(ref: str) -> type[torch.nn.Module]:
    """Import a model class from its ``"package.module:QualName"`` reference.

    Only classes that are ``torch.nn.Module`` subclasses with a ``from_config``
    classmethod are returned.

    Raises
    ------
    ImportError
        The reference is malformed or the module/class cannot be imported.
    TypeError
        The object is not a suitable model class.
    """
    module_name, _, qualname = ref.partition(":")
    if not _DOTTED.match(module_name) or not _DOTTED.match(qualname) or module_name == "__main__":
        raise ImportError(f"expected a model class reference 'package.module:ClassName', got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} of model class {ref!r} ({exc}); "
                          "install it or put its folder on PYTHONPATH") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ImportError(f"module {module_name!r} has no class {qualname!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise TypeError(f"{ref!r} is not a torch.nn.Module subclass")
    if not callable(getattr(obj, "from_config", None)):
        raise TypeError(f"model class {ref!r} has no from_config classmethod")
    return obj


def space_dicts(spaces: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Space key -> plain SpaceInfo dict (accepts SpaceInfo objects or dicts)."""
    out: dict[str, dict[str, Any]] = {}
    for key, info in (spaces or {}).items():
        d = dict(info) if isinstance(info, Mapping) else dict(info.to_dict())
        if "value_shape" in d:
            d["value_shape"] = [int(s) for s in d["value_shape"]]
        out[str(key)] = d
    return out


def check_spaces(expected: Mapping[str, Any], actual: Mapping[str, Any], *,
                 expected_name: str = "the model", actual_name: str = "the dataset") -> None:
    """Raise unless two space descriptions agree key by key and field by field.

    Parameters
    ----------
    expected, actual
        Space key (``"inputs/<name>"``, ``"output"``) -> SpaceInfo (or its dict).
    expected_name, actual_name
        What the two descriptions belong to, for the message.

    Raises
    ------
    SpaceMismatchError
        Naming each differing space and field, e.g. ``output: n_nodes 25 (the model)
        vs 36 (the dataset)``.
    """
    a, b = space_dicts(expected), space_dicts(actual)
    problems = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            problems.append(f"{key}: in {expected_name}, missing in {actual_name}")
        elif key not in a:
            problems.append(f"{key}: in {actual_name}, missing in {expected_name}")
        else:
            for field in sorted(set(a[key]) | set(b[key])):
                if a[key].get(field) != b[key].get(field):
                    problems.append(f"{key}: {field} {a[key].get(field)!r} ({expected_name}) vs "
                                    f"{b[key].get(field)!r} ({actual_name})")
    if problems:
        raise SpaceMismatchError(f"the function spaces of {actual_name} do not match {expected_name}: "
                                 + "; ".join(problems))


@dataclasses.dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with its normalizers and metadata.

    Attributes
    ----------
    model
        The network (in eval mode), on the requested device.
    input_normalizer, output_normalizer
        The normalizers it was trained with (or ``None``).
    spaces
        Space key -> SpaceInfo dict of the data it was trained on.
    model_class
        ``"module:Class"`` reference.
    config
        The model's constructor config.
    metadata
        ``kind``, versions, ``run`` and (for run checkpoints) the epoch, step and
        best validation value.
    path
        The checkpoint file.
    """

    model: torch.nn.Module
    input_normalizer: InputNormalizer
    output_normalizer: UnitGaussianNormalizer | None
    spaces: dict[str, dict[str, Any]]
    model_class: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    path: str

    @torch.no_grad()
    def predict(self, x: Inputs) -> torch.Tensor:
        """Physical outputs for physical inputs (encode, network, decode), without gradients.

        Shapes
        ------
        x: ``(batch, n_nodes, channels)`` or a dict of ``(batch, n_nodes[, ncomp])``;
        output: ``(batch, n_nodes[, ncomp])``.
        """
        return physical_forward(self.model, x, self.input_normalizer, self.output_normalizer)

    def check_spaces(self, spaces: Mapping[str, Any], name: str = "the dataset") -> None:
        """Raise :class:`~fe_operators.errors.SpaceMismatchError` unless ``spaces`` match
        the spaces the model was trained on (e.g. ``FEFile(path).space_dicts``)."""
        check_spaces(self.spaces, spaces, expected_name=f"the checkpoint {self.path}", actual_name=name)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model, its normalizers and metadata from a checkpoint.

    The model is built with ``from_config(config)`` and the stored tensors are
    *assigned* to it (``load_state_dict(assign=True)``), so mesh-dependent buffers such
    as sparse operators need only the right shape after ``from_config``, not the
    right sparsity pattern or values.

    Parameters
    ----------
    path
        A checkpoint file (``best.pt``, ``last.pt`` of a run).
    device
        Where to put model and normalizers.

    Returns
    -------
    LoadedModel

    Raises
    ------
    CheckpointError
        Missing/corrupt file, a model class that cannot be imported or is not a model,
        or weights that do not fit the rebuilt model.

    Examples
    --------
    >>> loaded = load_model("runs/darcy/best.pt")          # doctest: +SKIP
    >>> loaded.check_spaces(FEFile("darcy.h5").space_dicts)
    >>> u = loaded.predict(x)                               # physical units
    """
    data = read_checkpoint(path)
    ref, config = data["model"]["class"], data["model"]["config"]
    try:
        cls = import_model_class(ref)
    except (ImportError, TypeError) as exc:
        raise CheckpointError(path, str(exc)) from None
    try:
        model = cls.from_config(config)
    except Exception as exc:  # any constructor failure, reported with its context
        raise CheckpointError(path, f"{ref}.from_config failed on the stored config: "
                                    f"{type(exc).__name__}: {exc}") from exc
    try:  # assign: buffers (e.g. sparse operators of the mesh) come from the checkpoint as they are
        model.load_state_dict(data["model"]["state_dict"], assign=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"the stored weights do not fit {ref} built from the stored config: "
                                    f"{exc}") from None
    model.to(device).eval()
    try:
        x_norm = normalizers_from_payload(data["normalizers"].get("input"))
        y_norm = normalizers_from_payload(data["normalizers"].get("output"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"malformed normalizer entry: {exc}") from None
    if isinstance(x_norm, UnitGaussianNormalizer):
        x_norm.to(device)
    elif x_norm is not None:
        for m in x_norm.values():
            m.to(device)
    if y_norm is not None:
        y_norm.to(device)
    progress = data.get("progress") or {}
    metadata = {
        "kind": data["kind"],
        "format_version": data["format_version"],
        "fe_operators_version": data["fe_operators_version"],
        "torch_version": data.get("torch_version"),
        "run": data.get("run"),
        "epoch": progress.get("epoch"),
        "step": progress.get("step"),
        "best": progress.get("best"),
    }
    return LoadedModel(model, x_norm, y_norm, space_dicts(data["spaces"]), ref, config, metadata, str(path))
