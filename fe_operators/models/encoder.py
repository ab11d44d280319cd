"""SPON's encoder: input fields -> channels on the processor's nodes.

Every input field is brought onto the DOF nodes of the output space (the processor's
nodes) by a fixed map of the :class:`~fe_operators.models.context.MeshContext`: the
identity when the field already lives there, otherwise an interpolation (or lumped
L2 projection) matrix assembled once by Firedrake — also from another mesh of the
domain.  UFL expressions are interpolated into a space by the caller
(:func:`~fe_operators.models.inference.predict` does it).  Maps are applied in float64,
so an input on the output nodes arrives unchanged and the lifting read from it is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence, Union

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext

__all__ = ["InputField", "InputEncoder", "Inputs", "as_fields"]

#: a batch of inputs: stacked channels ``(batch, n_in, channels)`` or a dict by field name
Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class InputField:
    """Name and number of components of one input field (a vector field gives ``ncomp`` channels)."""

    name: str
    ncomp: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "ncomp": self.ncomp}


def as_fields(fields: Sequence[InputField | Mapping[str, Any] | str | tuple[str, int]]) -> tuple[InputField, ...]:
    """Normalise field descriptions (``InputField``, ``{"name", "ncomp"}``, ``"f"``, ``("u", 2)``)."""
    out = []
    for f in fields:
        if isinstance(f, InputField):
            out.append(f)
        elif isinstance(f, str):
            out.append(InputField(f))
        elif isinstance(f, Mapping):
            out.append(InputField(str(f["name"]), int(f.get("ncomp", 1))))
        else:
            name, ncomp = f
            out.append(InputField(str(name), int(ncomp)))
    names = [f.name for f in out]
    if not out or len(set(names)) != len(names) or min(f.ncomp for f in out) < 1:
        raise ValueError(f"expected distinct input field names with ncomp >= 1, got {out}")
    return tuple(out)


class InputEncoder(torch.nn.Module):
    """Maps input fields onto the processor's nodes and stacks them as channels (no weights).

    Parameters
    ----------
    fields
        The input fields, in channel order.

    Shapes
    ------
    Input: a tensor ``(batch, n_in, channels)`` (every field given on ``n_in`` nodes of
    one space; ``(batch, n_in)`` when there is one scalar field), or a dict
    ``name -> (batch, n_in_k)`` / ``(batch, n_in_k, ncomp_k)`` (fields on different
    spaces).  Output: ``(batch, n, channels)`` float64 on the context's ``n`` nodes.
    """

    def __init__(self, fields: Sequence[InputField]) -> None:
        super().__init__()
        self.fields = as_fields(fields)
        bounds = [0]
        for f in self.fields:
            bounds.append(bounds[-1] + f.ncomp)
        self.slices = tuple(slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]))

    @property
    def channels(self) -> int:
        """Total number of channels."""
        return self.slices[-1].stop

    def split(self, x: Inputs, context: MeshContext) -> list[torch.Tensor]:
        """Validate the inputs and return one ``(batch, n_in_k, ncomp_k)`` tensor per field.

        Raises
        ------
        SpaceMismatchError
            Wrong names, shapes or batch sizes (the message gives the expected layout).
        """
        if len(context.input_maps) != len(self.fields):
            raise SpaceMismatchError(
                f"the mesh context has maps for {len(context.input_maps)} input fields, the model "
                f"expects {len(self.fields)} ({', '.join(f.name for f in self.fields)})"
            )
        if isinstance(x, torch.Tensor):
            n_in = {context.input_nodes(k) for k in range(len(self.fields))}
            if len(n_in) > 1:
                raise SpaceMismatchError(
                    "the input fields live on different spaces (node counts "
                    f"{sorted(n_in)}); pass a dict name -> tensor instead of one stacked tensor"
                )
            (n,) = n_in
            c = self.channels
            if x.ndim == 2 and c == 1:
                x = x.unsqueeze(-1)
            if x.ndim != 3 or x.shape[1:] != (n, c):
                raise SpaceMismatchError(
                    f"expected stacked inputs of shape (batch, {n}, {c}) "
                    f"({' + '.join(f'{f.name}:{f.ncomp}' for f in self.fields)} channels), got {tuple(x.shape)}"
                )
            return [x[..., s] for s in self.slices]
        if not isinstance(x, Mapping):
            raise TypeError(f"expected a tensor or a dict name -> tensor, got {type(x).__name__}")
        want = [f.name for f in self.fields]
        if set(x) != set(want):
            raise SpaceMismatchError(f"expected input fields {want}, got {sorted(x)}")
        parts, batch = [], None
        for k, f in enumerate(self.fields):
            t = x[f.name]
            n = context.input_nodes(k)
            if t.ndim == 2 and f.ncomp == 1:
                t = t.unsqueeze(-1)
            if t.ndim != 3 or t.shape[1:] != (n, f.ncomp):
                layout = f"(batch, {n})" if f.ncomp == 1 else f"(batch, {n}, {f.ncomp})"
                raise SpaceMismatchError(f"input {f.name!r}: expected shape {layout}, got {tuple(t.shape)}")
            if batch is not None and t.shape[0] != batch:
                raise SpaceMismatchError(f"input {f.name!r}: batch size {t.shape[0]}, other inputs {batch}")
            batch = t.shape[0]
            parts.append(t)
        return parts

    def forward(self, x: Inputs, context: MeshContext) -> torch.Tensor:
        """Channels ``(batch, n, channels)`` in float64 on the processor's nodes."""
        return self.nodes(self.split(x, context), context)

    def nodes(self, parts: Sequence[torch.Tensor], context: MeshContext) -> torch.Tensor:
        """The fields of :meth:`split` mapped onto the processor's nodes and stacked, float64."""
        out = []
        for t, m in zip(parts, context.input_maps):
            t = t.to(device=context.device, dtype=torch.float64)
            out.append(t if m is None else m.apply(t))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}:{f.ncomp}" for f in self.fields)
