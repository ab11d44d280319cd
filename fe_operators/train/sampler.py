"""A resumable data order: per-epoch permutations from one seeded generator."""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of a fresh random permutation per epoch, resumable mid-epoch.

    Each iteration draws one permutation of ``range(n)`` from ``generator`` and yields its
    consecutive batches, starting at batch :attr:`skip`.  A run that saves the
    generator's state *before* the epoch's draw plus the number of batches done can
    therefore replay the same permutation and continue where it stopped.

    Parameters
    ----------
    n
        Number of samples.
    batch_size
        Samples per batch (the last batch may be smaller).
    generator
        The generator that draws the permutations (owned by the trainer).
    shuffle
        ``False``: the identity order every epoch (the generator is not used).

    Attributes
    ----------
    skip : int
        Batches to skip at the start of the next iteration (set when resuming).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> None:
        if n < 1:
            raise ValueError(f"expected at least one sample, got {n}")
        if batch_size < 1:
            raise ValueError(f"expected a positive batch size, got {batch_size}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.generator = generator
        self.shuffle = shuffle
        self.skip = 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        order = order.tolist()
        for b in range(self.skip, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]
