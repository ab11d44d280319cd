"""Summaries of dataset files, steady or trajectories (``fe-operators info`` prints them)."""

from __future__ import annotations

import os
from typing import Any

import h5py

from fe_operators.data.h5 import FEFile
from fe_operators.data.header import DAMAGE, damaged_file_error, dataset_group
from fe_operators.data.layout import KIND_TRAJECTORIES, file_kind
from fe_operators.data.trajectories import TrajectoryFile

__all__ = ["dataset_info", "format_dataset_info", "open_dataset"]


def open_dataset(path: str | os.PathLike) -> FEFile | TrajectoryFile:
    """The reader of a dataset file of either kind: :class:`FEFile` or :class:`TrajectoryFile`.

    Raises
    ------
    DatasetFileError
        As the readers.
    """
    kind = None
    if os.path.isfile(path):
        try:
            with h5py.File(path, "r") as h5:
                g = dataset_group(h5)
                kind = file_kind(g.attrs) if isinstance(g, h5py.Group) else None
        except OSError:
            kind = None  # the reader says what is wrong
        except DAMAGE as exc:
            raise damaged_file_error(str(path), exc, "its metadata") from exc
    return TrajectoryFile(path) if kind == KIND_TRAJECTORIES else FEFile(path)


def dataset_info(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of a dataset file (no sample is read).

    Returns
    -------
    dict
        ``path``, ``kind`` (``"steady"`` or ``"trajectories"``), ``problem``, ``mesh``,
        ``seed``, ``n_samples``, ``n_done``, ``complete``, ``seconds_per_sample``, the
        last run, and per kind: ``inputs`` (name -> DOF shape) and ``output`` (DOF shape)
        of a steady file; ``param_names``, ``shape`` ``[n_samples, n_stored, n_dofs]``,
        ``time`` (``n_steps``, ``store_every``, ``spinup_steps``, ``dt``) and
        ``stored_dt`` of a trajectory file.
    """
    f = open_dataset(path)
    prov = f.provenance
    runs = prov.get("runs") or [{}]
    out: dict[str, Any] = {
        "path": f.path, "kind": file_kind({"kind": prov.get("kind", "steady")}),
        "problem": prov.get("problem"), "mesh": prov.get("mesh"), "seed": prov.get("seed"),
        "n_samples": f.n_samples, "n_done": int(f.done.sum()), "complete": f.complete,
        "seconds_per_sample": prov.get("seconds_per_sample_mean"), "last_run": runs[-1],
    }
    if isinstance(f, TrajectoryFile):
        out.update({"param_names": f.param_names, "shape": [f.n_samples, f.n_stored, f.n_dofs],
                    "time": f.time_settings, "stored_dt": f.dt})
    else:
        out.update({"inputs": {n: list(f.dof_shape(f"inputs/{n}")) for n in f.input_names},
                    "output": list(f.dof_shape("output"))})
    return out


def format_dataset_info(info: dict[str, Any]) -> str:
    """The text of :func:`dataset_info` for a terminal."""
    lines = [f"{info['path']}: {info['kind']} dataset of {info['problem']!s} on mesh {info['mesh']!s}, "
             f"seed {info['seed']}",
             f"  samples: {info['n_done']}/{info['n_samples']} done" + ("" if info["complete"] else " (incomplete)")]
    if info["kind"] == KIND_TRAJECTORIES:
        n, s, d = info["shape"]
        t = info["time"]
        lines += [f"  trajectories: {n} x {s} stored states x {d} DOFs (sample x step x DOF)",
                  f"  parameters: {', '.join(info['param_names'])}",
                  f"  time: dt {t['dt']:.6g}, {t['spinup_steps']} spin-up steps, then {t['n_steps']} steps, "
                  f"every {t['store_every']} stored (stored states {info['stored_dt']:.6g} apart)"]
    else:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in info["inputs"].items())
        lines += [f"  inputs: {shapes or 'none'}", f"  output: {tuple(info['output'])}"]
    if info["seconds_per_sample"] is not None:
        lines.append(f"  solve: {info['seconds_per_sample']:.3g} s per sample "
                     f"(last run: {info['last_run'].get('ranks')} rank(s), {info['last_run'].get('date')})")
    return "\n".join(lines)
