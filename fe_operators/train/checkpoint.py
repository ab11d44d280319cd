"""Self-describing checkpoints: one file, plain data, atomic writes, safe loading.

A checkpoint is one ``torch.save`` file of a dict holding only tensors and plain Python
values (``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples, dicts), so it
loads with ``torch.load(weights_only=True)`` and never unpickles code.  It holds one model,
a :class:`~fe_operators.models.NormalizedModel` (the network between its normalizers:
physical values in and out).  Layout (format version 2)::

    format                "fe_operators.checkpoint"
    format_version        2
    fe_operators_version  package version that wrote it
    torch_version         torch version that wrote it
    kind                  "last" | "best" | "model"
    model
      class               "package.module:ClassName" of the network, a registered model
                          class (fe_operators.models.register_model_class)
      config              its JSON-able constructor config (network.config; from_config(config))
      normalizers         {"input": None | "single" | [input names], "output": None | "single"}
      state_dict          weights and buffers of the NormalizedModel: "network.*",
                          "input_normalizer.*", "output_normalizer.*"
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

Only this format version is read.  The package is pre-release: a checkpoint of an older
format (version 1: normalizer statistics in a top-level ``normalizers`` entry) is refused
with a :class:`~fe_operators.errors.CheckpointError` that says to retrain, not converted.

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then
renamed over the target with ``os.replace``: a crash mid-write leaves the previous file
intact.  :func:`load_model` rebuilds the model and metadata without the script that
trained it.  The network's class is looked up in the registry of model classes
(:mod:`fe_operators.models.registry`), never imported by the name the file gives: it must
be one of fe_operators' models or registered by the user, and offer the contract of
``fe_operators.models`` (a JSON-able ``config`` property and a ``from_config`` classmethod).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pickle
import re
import socket
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from fe_operators.errors import CheckpointError, SpaceMismatchError
from fe_operators.limits import over_memory
from fe_operators.models.normalized import Inputs, NormalizedModel
from fe_operators.models.registry import check_model_class, class_reference, model_class
from fe_operators.sparse.warnings import csr_beta_warning_silenced
from fe_operators.train.checkpoint_guards import check_plain, check_sizes, torch_refusal

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ConfigurableModel",
    "LoadedModel",
    "atomic_write",
    "remove_stale_temporaries",
    "save_checkpoint",
    "read_checkpoint",
    "model_payload",
    "model_class_path",
    "load_model",
    "space_dicts",
    "check_spaces",
]

FORMAT = "fe_operators.checkpoint"
FORMAT_VERSION = 2
_REQUIRED = ("format_version", "fe_operators_version", "kind", "model", "spaces")
_MODEL_KEYS = ("class", "config", "normalizers", "state_dict")


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
_HOST = socket.gethostname()
#: temporaries of writers that recorded no host and process (older versions) are stale after this
_LEGACY_STALE_SECONDS = 3600.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of atomic writes to ``path`` whose writer is gone.

    A temporary file of :func:`atomic_write` names its writer's host and process; it is
    stale when that process no longer exists on this host (killed mid-write).  Files of
    writers on other hosts (a shared file system) are left alone; those of older versions,
    which name no writer, count as stale after an hour.

    Returns
    -------
    list of Path
        The removed files.
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(?P<host>.+)-(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        found = pattern.match(tmp.name)
        if found is None:
            continue
        try:
            if found["pid"] is not None:
                stale = found["host"] == _HOST and not _alive(int(found["pid"]))
            else:
                stale = time.time() - tmp.stat().st_mtime > _LEGACY_STALE_SECONDS
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # removed by someone else meanwhile
            continue
    return removed


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
    the temporary file is removed when the failure is an exception.  The temporary file
    is named ``.<name>.<host>-<pid>.<random>.tmp``; one left by a writer that was killed
    (SIGKILL, power loss) is removed by the next write to the same target
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
    check_plain(data, "checkpoint")
    atomic_write(path, lambda f: torch.save(data, f))


def model_class_path(model: torch.nn.Module) -> str:
    """The ``"module:QualName"`` reference of a network's class, checked to be loadable.

    Parameters
    ----------
    model
        The network (a :class:`~fe_operators.models.NormalizedModel` stands for its
        ``network``).

    Raises
    ------
    TypeError
        The class lives in ``__main__`` or inside a function, lacks ``config`` /
        ``from_config``, or is not registered
        (:func:`~fe_operators.models.register_model_class`), so a checkpoint could not
        rebuild it.
    """
    network = model.network if isinstance(model, NormalizedModel) else model
    cls = type(network)
    check_model_class(cls)
    ref = class_reference(cls)
    if not isinstance(network, ConfigurableModel):
        raise TypeError(f"model class {ref} needs a JSON-able `config` property and a `from_config` classmethod")
    try:
        registered = model_class(ref)
    except LookupError as exc:
        raise TypeError(str(exc)) from None
    if registered is not cls:
        raise TypeError(f"model class {ref} is not the class registered under that name ({registered!r})")
    return ref


def model_payload(model: torch.nn.Module) -> dict[str, Any]:
    """The ``model`` entry of a checkpoint: the network's class and config, the normalizer
    layout and the ``state_dict`` of the :class:`~fe_operators.models.NormalizedModel`.

    Parameters
    ----------
    model
        A :class:`~fe_operators.models.NormalizedModel`, or a network (stored as one
        without normalizers).

    Raises
    ------
    TypeError
        The network is not checkpointable (see :func:`model_class_path`) or its config
        is not JSON-able.
    """
    model = model if isinstance(model, NormalizedModel) else NormalizedModel(model)
    ref = model_class_path(model)
    config = model.network.config
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the config of {ref} is not JSON-able: {exc}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"class": ref, "config": config, "normalizers": model.layout, "state_dict": state}


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint file with ``torch.load(weights_only=True)`` on the CPU.

    Raises
    ------
    CheckpointError
        The file is missing, larger than the memory available, not a torch file,
        truncated or corrupt, holds pickled code, is not an fe_operators checkpoint, or
        was written in another format version (an older one: retrain; a newer one:
        upgrade fe_operators).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a regular file")
    # torch.load holds every stored tensor in memory: about the file's size
    too_large = over_memory(path.stat().st_size, "loading it", "load it on a machine with more memory")
    if too_large:
        raise CheckpointError(path, too_large)
    try:
        with warnings.catch_warnings(), csr_beta_warning_silenced():  # stored CSR operators are rebuilt here
            # a corrupt file can look like an odd pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = torch_refusal(str(exc), path)
        if refused:
            raise CheckpointError(path, f"refused by torch.load(weights_only=True): {refused}; nothing in it was "
                                        "run (load checkpoints only from sources you trust)") from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
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
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            path, f"format version {version!r} written by fe_operators {data['fe_operators_version']}; this "
                  f"fe_operators reads up to version {FORMAT_VERSION}: upgrade fe_operators")
    if version < FORMAT_VERSION:  # pre-release formats are refused, not converted
        raise CheckpointError(
            path, f"format version {version} written by fe_operators {data['fe_operators_version']}, a pre-release "
                  f"format this fe_operators no longer reads (it reads version {FORMAT_VERSION}): retrain the model "
                  "to write a current checkpoint")
    model = data["model"]
    if not isinstance(model, dict) or not set(_MODEL_KEYS) <= set(model):
        missing = [k for k in _MODEL_KEYS if not isinstance(model, dict) or k not in model]
        raise CheckpointError(path, f"incomplete fe_operators checkpoint: missing model.{', model.'.join(missing)}")
    return data


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
    """A model rebuilt from a checkpoint, with its metadata.

    Attributes
    ----------
    model
        The :class:`~fe_operators.models.NormalizedModel` (network and normalizers;
        physical values in and out), in eval mode, on the requested device.
    spaces
        Space key -> SpaceInfo dict of the data it was trained on.
    model_class
        ``"module:Class"`` reference of the network.
    config
        The network's constructor config.
    metadata
        ``kind``, versions, ``run`` and (for run checkpoints) the epoch, step and
        best validation value.
    path
        The checkpoint file.
    """

    model: NormalizedModel
    spaces: dict[str, dict[str, Any]]
    model_class: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    path: str

    @property
    def network(self) -> torch.nn.Module:
        """The network inside the normalizers (e.g. the SPON)."""
        return self.model.network

    @torch.no_grad()
    def predict(self, x: Inputs, **kwargs: Any) -> torch.Tensor:
        """Physical outputs for physical inputs (``model(x, **kwargs)``), without gradients.

        Shapes
        ------
        x: ``(batch, n_nodes, channels)`` or a dict of ``(batch, n_nodes[, ncomp])``;
        output: ``(batch, n_nodes[, ncomp])``.
        """
        return self.model(x, **kwargs)

    def check_spaces(self, spaces: Mapping[str, Any], name: str = "the dataset") -> None:
        """Raise :class:`~fe_operators.errors.SpaceMismatchError` unless ``spaces`` match
        the spaces the model was trained on (e.g. ``FEFile(path).space_dicts``)."""
        check_spaces(self.spaces, spaces, expected_name=f"the checkpoint {self.path}", actual_name=name)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model (network and normalizers) and its metadata from a checkpoint.

    The network is built with ``from_config(config)`` of its registered class, put
    between placeholder normalizers of the stored layout, and the stored tensors are
    *assigned* to the whole (``load_state_dict(assign=True)``), so mesh-dependent buffers
    such as sparse operators, and the normalizers' statistics, need no particular shape
    after ``from_config``.

    Parameters
    ----------
    path
        A checkpoint file (``best.pt``, ``last.pt`` of a run), format version 2.
    device
        Where to put the model.

    Returns
    -------
    LoadedModel

    Raises
    ------
    CheckpointError
        Missing/corrupt/refused file, a network class that is not registered, or
        weights that do not fit the rebuilt model (their shapes are checked against the
        stored config before the network is allocated), or a model too large for the
        memory available.

    Examples
    --------
    >>> loaded = load_model("runs/darcy/best.pt")          # doctest: +SKIP
    >>> loaded.check_spaces(FEFile("darcy.h5").space_dicts)
    >>> u = loaded.predict(x)                               # physical units
    """
    data = read_checkpoint(path)
    entry = data["model"]
    ref, config = entry["class"], entry["config"]
    try:
        cls = model_class(ref)
    except LookupError as exc:
        raise CheckpointError(path, str(exc)) from None
    check_sizes(path, cls, ref, config, entry["state_dict"])
    try:
        network = cls.from_config(config)
    except Exception as exc:  # any constructor failure, reported with its context
        raise CheckpointError(path, f"{ref}.from_config failed on the stored config: "
                                    f"{type(exc).__name__}: {exc}") from exc
    try:
        model = NormalizedModel.with_layout(network, entry["normalizers"])
    except (AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"malformed model.normalizers entry: {exc}") from None
    try:  # assign: buffers (sparse operators of the mesh, statistics) come from the checkpoint as they are
        model.load_state_dict(entry["state_dict"], assign=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"the stored weights do not fit {ref} built from the stored config: "
                                    f"{exc}") from None
    model.to(device).eval()
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
    return LoadedModel(model, space_dicts(data["spaces"]), ref, config, metadata, str(path))
