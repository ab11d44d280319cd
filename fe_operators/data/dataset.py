"""A torch ``Dataset`` over a generated file, and train/val/test splits.

Nothing here imports Firedrake: a model can be trained from the file alone.

Samples are returned in the DOF-tensor layout of docs/design.md §2.1 (no batch axis):

* inputs: ``(n_nodes, channels)`` when all inputs live on the same space (channels in
  the file's input order; a vector input contributes ``ncomp`` channels), otherwise a
  dict name -> ``(n_nodes,)`` or ``(n_nodes, ncomp)``;
* output: ``(n_nodes,)`` for scalar spaces, ``(n_nodes, ncomp)`` otherwise.

Example
-------
>>> from fe_operators.data import FEDataset, FEFile, split_indices     # doctest: +SKIP
>>> train_idx, val_idx, test_idx = split_indices(FEFile("darcy.h5").done, (0.8, 0.1, 0.1))
>>> train = FEDataset("darcy.h5", train_idx)
>>> x_norm, y_norm = train.fit_normalizers()  # train split only; the model applies them
>>> loader = torch.utils.data.DataLoader(train, batch_size=16, num_workers=2)

Samples are physical (raw) values: normalisation is part of the model
(:class:`~fe_operators.models.NormalizedModel`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch

from fe_operators.data.digests import non_finite_error

from fe_operators.data.h5 import FEFile
from fe_operators.data.header import damaged_file_error

from fe_operators.data.layout import GROUP, space_key
from fe_operators.errors import ConfigError
from fe_operators.models.normalized import RunningMoments, UnitGaussianNormalizer

__all__ = ["FEDataset", "split_indices", "split_rows"]

#: inputs of one sample or batch: stacked channels, or a dict by input name
Inputs = torch.Tensor | dict[str, torch.Tensor]


def split_indices(
    samples: int | np.ndarray | Sequence[bool],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Random disjoint index subsets, e.g. train/val/test.

    Parameters
    ----------
    samples
        A number of samples ``n`` (indices ``0..n-1``), or a boolean mask such as
        :attr:`FEFile.done` (only ``True`` positions are split).
    fractions
        Fraction of the samples in each subset (sum at most 1).
    seed
        Seed of the shuffle.

    Returns
    -------
    tuple of numpy.ndarray
        One sorted int64 index array per fraction.
    """
    if isinstance(samples, (int, np.integer)):
        pool = np.arange(int(samples), dtype=np.int64)
    else:
        mask = np.asarray(samples)
        if mask.dtype != bool:
            raise TypeError(f"expected a sample count or a boolean mask, got an array of {mask.dtype}")
        pool = np.flatnonzero(mask).astype(np.int64)
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or (fr < 0).any() or fr.sum() > 1 + 1e-12:
        raise ValueError(f"expected non-negative fractions summing to at most 1, got {list(fractions)}")
    perm = np.random.default_rng(seed).permutation(pool)
    cuts = np.rint(np.cumsum(fr) * pool.size).astype(np.int64)
    starts = np.concatenate([[0], cuts[:-1]])
    return tuple(np.sort(perm[a:b]) for a, b in zip(starts, cuts))


def split_rows(file: FEFile, split: Sequence[int | float], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train/val/test file rows of a run's ``data.split`` (what ``fe-operators train`` trains on).

    Parameters
    ----------
    file
        The dataset file; only its valid (done) samples are split.
    split
        ``[train, val, test]``: sample counts (all integers) or fractions of the valid samples.
    seed
        Seed of the shuffle (``data.seed``).

    Returns
    -------
    tuple of numpy.ndarray
        Sorted file rows of the train, val and test splits.

    Raises
    ------
    ConfigError
        (key ``data.split``) The counts ask for more samples than the file holds, or the
        train or val split is empty.
    """
    n = int(file.done.sum())
    if all(isinstance(v, int) for v in split):
        if sum(split) > n:
            raise ConfigError("data.split", f"asks for {sum(split)} samples; {file.path} has {n} valid samples")
        fractions = [v / n for v in split]
    else:
        fractions = [float(v) for v in split]
    train, val, test = split_indices(file.done, fractions, seed)
    if train.size == 0 or val.size == 0:
        raise ConfigError("data.split", f"{list(split)} of {n} samples leaves the train or val split empty")
    return train, val, test


class FEDataset(torch.utils.data.Dataset):
    """Samples of a dataset file as torch tensors.

    The HDF5 file is opened lazily, once per process, so a ``DataLoader`` with
    ``num_workers > 0`` works (each worker opens its own handle).

    Parameters
    ----------
    path
        A file written by ``fe-operators generate``.
    indices
        Sample indices (file rows) in this dataset, e.g. one split of
        :func:`split_indices`; default: all valid (done) samples.
    dtype
        Dtype of the returned tensors (the file holds float64).
    preload
        Read the selected samples into memory at construction.

    Raises
    ------
    DatasetFileError
        Not a dataset file.
    IndexError
        An index is out of range or not a valid (done) sample.
    NonFiniteError
        A selected sample holds NaN or infinite values (checked once, at construction;
        without ``preload`` by streaming the selected samples); the message names the
        sample and the field.
    DatasetFileError
        A selected sample does not match its stored digests (checked at construction,
        and again by :meth:`__getitem__` for each sample it reads from the file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        preload: bool = False,
    ) -> None:
        self.file = FEFile(path)
        self.path = self.file.path
        self.indices = (np.flatnonzero(self.file.done) if indices is None
                        else np.asarray(indices, dtype=np.int64).reshape(-1))
        self.file.check_indices(self.indices)
        self.input_names = list(self.file.input_names)
        self.stacked = _same_space([self.file.space_dicts[space_key(n)] for n in self.input_names])
        self.dtype = dtype
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._memory: tuple[dict[str, np.ndarray], np.ndarray] | None = (
            self.file.read(self.indices) if preload else None
        )
        self._check_finite()

    def _check_finite(self, block: int = 256) -> None:
        """Raise :class:`~fe_operators.errors.NonFiniteError` naming the first sample and field with NaN/inf."""
        for start in range(0, len(self), block):
            rows = self.indices[start:start + block]
            if self._memory is not None:
                part = slice(start, start + block)
                inputs, output = {n: a[part] for n, a in self._memory[0].items()}, self._memory[1][part]
            else:
                inputs, output = self.file.read(rows)
            for name, arr in [*((space_key(n), inputs[n]) for n in self.input_names), ("output", output)]:
                bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    raise non_finite_error(self.path, int(rows[k]), name, arr[k])

    # ------------------------------------------------------------------ file handle
    def _group(self) -> h5py.Group:
        """The data group, opened on first use in this process."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5[GROUP]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, None  # handles do not cross processes
        return state

    def close(self) -> None:
        """Close this process's file handle (reopened on next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, None

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return int(self.indices.size)

    def raw(self, positions: Sequence[int] | np.ndarray) -> tuple[Inputs, torch.Tensor]:
        """Un-normalised float64 batch of dataset positions (not file rows)."""
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        if self._memory is not None:
            inputs = {n: self._memory[0][n][positions] for n in self.input_names}
            output = self._memory[1][positions]
        else:
            inputs, output = self.file.read(rows)
        return self._arrange(inputs), torch.from_numpy(np.ascontiguousarray(output))

    def _arrange(self, inputs: Mapping[str, np.ndarray]) -> Inputs:
        """Batched input arrays -> stacked ``(batch, n_nodes, channels)`` tensor or dict."""
        if self.stacked:
            cols = [a.reshape(a.shape[0], a.shape[1], -1) for a in (inputs[n] for n in self.input_names)]
            return torch.from_numpy(np.concatenate(cols, axis=2))
        return {n: torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names}

    def __getitem__(self, k: int) -> tuple[Inputs, torch.Tensor]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"dataset index {k} out of range for {len(self)} samples")
        if self._memory is not None:
            x, y = self.raw([k % len(self)])
            x = x[0] if isinstance(x, torch.Tensor) else {n: v[0] for n, v in x.items()}
            y = y[0]
        else:
            row = int(self.indices[k])
            try:
                g = self._group()
                arrays = {n: g[space_key(n)][row] for n in self.input_names}
                output = g["output"][row]
                digests = g["digests"][row]
            except (OSError, KeyError) as exc:  # a damaged chunk or B-tree
                raise damaged_file_error(self.path, exc, f"sample {row}") from exc
            self.file.verify(np.array([row]), {n: a[None] for n, a in arrays.items()}, output[None],
                             digests[None])
            x = self._arrange({n: a[None] for n, a in arrays.items()})
            x = x[0] if isinstance(x, torch.Tensor) else {n: v[0] for n, v in x.items()}
            y = torch.from_numpy(output)
        x = x.to(self.dtype) if isinstance(x, torch.Tensor) else {n: v.to(self.dtype) for n, v in x.items()}
        return x, y.to(self.dtype)

    # ------------------------------------------------------------------ normalizers
    def fit_normalizers(
        self, per: str = "dof", eps: float = 1e-8, block: int = 256
    ) -> tuple[UnitGaussianNormalizer | dict[str, UnitGaussianNormalizer], UnitGaussianNormalizer]:
        """Fit input and output normalizers to this dataset's samples (e.g. the train split).

        Streams the samples in blocks of ``block`` (float64, pairwise moment updates).

        Returns
        -------
        input_normalizer
            One normalizer (stacked inputs) or a dict by input name.
        output_normalizer
        """
        xs = RunningMoments(per) if self.stacked else {n: RunningMoments(per) for n in self.input_names}
        ys = RunningMoments(per)
        for start in range(0, len(self), block):
            x, y = self.raw(np.arange(start, min(start + block, len(self))))
            if isinstance(xs, RunningMoments):
                xs.add(x)
            else:
                for n in self.input_names:
                    xs[n].add(x[n])
            ys.add(y)
        x_norm = xs.normalizer(eps) if isinstance(xs, RunningMoments) else {n: m.normalizer(eps) for n, m in xs.items()}
        return x_norm, ys.normalizer(eps)


def _same_space(infos: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the spaces described by ``infos`` share DOF nodes (so inputs can be stacked)."""
    keys = {(d["family"], d["degree"], d["n_nodes"]) for d in infos}
    return len(keys) == 1
