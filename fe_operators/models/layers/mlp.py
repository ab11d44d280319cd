"""Small building blocks: activations by name and a plain MLP."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["ACTIVATIONS", "activation", "MLP"]

#: activation name -> module class (names are what configs store)
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "gelu": torch.nn.GELU,
    "relu": torch.nn.ReLU,
    "silu": torch.nn.SiLU,
    "tanh": torch.nn.Tanh,
}


def activation(name: str) -> torch.nn.Module:
    """A new activation module by name.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


class MLP(torch.nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Parameters
    ----------
    sizes
        Feature sizes ``(in, hidden..., out)``; at least two.
    act
        Activation name (see :data:`ACTIVATIONS`).

    Shapes
    ------
    ``(..., sizes[0]) -> (..., sizes[-1])``.
    """

    def __init__(self, sizes: Sequence[int], act: str = "gelu") -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"expected at least two positive layer sizes, got {sizes}")
        layers: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if k:
                layers.append(activation(act))
            layers.append(torch.nn.Linear(a, b))
        super().__init__(*layers)
