"""``predict``: Firedrake Functions (or tensors) in, Firedrake Functions out, batched.

The Python counterpart of ``fe-operators evaluate``, in three steps: the samples become
the model's input tensors (:func:`_input_tensors`), the mesh context is chosen — the
model's own when it was built for these spaces, else a new one (:func:`_choose_context`)
— and the model runs in batches.  Imports Firedrake on first call.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.normalized import NormalizedModel
from fe_operators.models.spon import SPON

__all__ = ["predict"]


def _field_spaces(model: SPON, samples: Sequence[Mapping[str, Any]], output_space: Any,
                  input_spaces: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per input name, the space its values are given on (UFL expressions: interpolated there)."""
    import firedrake as fd

    from fe_operators.models.build import node_space

    spaces: dict[str, Any] = {}
    for f in model.encoder.fields:
        given = {s[f.name].function_space() for s in samples if isinstance(s.get(f.name), fd.Function)}
        if len(given) > 1:
            raise SpaceMismatchError(f"input {f.name!r}: the samples' Functions live on {len(given)} different spaces")
        if given:
            spaces[f.name] = given.pop()
        elif input_spaces is not None and f.name in input_spaces:
            spaces[f.name] = input_spaces[f.name]
        else:
            spaces[f.name] = node_space(output_space, () if f.ncomp == 1 else (f.ncomp,))
    return spaces


def _stacked(x: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """Inputs by name as stacked channels ``(batch, n, C)`` in field order (all on the same nodes).

    Raises
    ------
    SpaceMismatchError
        The inputs have different numbers of nodes.
    """
    sizes = {name: int(x[name].shape[1]) for name in names}
    if len(set(sizes.values())) != 1:
        raise SpaceMismatchError(f"the model was trained on inputs stacked on one space (one input normalizer), "
                                 f"the given inputs have different numbers of nodes {sizes}: give them on one space")
    return torch.cat([x[n].reshape(x[n].shape[0], x[n].shape[1], -1) for n in names], dim=2)


def _matches(context: MeshContext, spaces: Sequence[Any], output_space: Any) -> bool:
    """Whether ``context`` was built for these spaces (coordinates and node counts agree)."""
    from fe_operators.fem.graph import dof_coordinates
    from fe_operators.models.build import same_nodes

    if context.n_nodes != output_space.dof_dset.size or context.ncomp != output_space.block_size:
        return False
    for k, V in enumerate(spaces):
        same = same_nodes(V, output_space)
        if same != (context.input_maps[k] is None) or context.input_nodes(k) != V.dof_dset.size:
            return False
    coords = torch.from_numpy(dof_coordinates(output_space))
    return bool(torch.allclose(context.coords.cpu(), coords, rtol=0, atol=1e-12))


def predict(
    model: SPON | NormalizedModel,
    inputs: Sequence[Mapping[str, Any]] | torch.Tensor | Mapping[str, torch.Tensor],
    output_space: Any,
    *,
    bcs: Any = None,
    context: MeshContext | None = None,
    input_spaces: Mapping[str, Any] | None = None,
    lifting: torch.Tensor | None = None,
    batch_size: int = 32,
    method: str = "auto",
) -> list[Any]:
    """Evaluate a SPON and return Firedrake Functions on ``output_space``.

    Parameters
    ----------
    model
        A SPON, or a :class:`NormalizedModel` around one (e.g. ``load_model(path).model``
        of a trained run: physical inputs in, physical outputs out).
    inputs
        A list of samples, each a dict ``name -> Function | UFL expression | number``;
        or a batched tensor / dict of tensors (as :meth:`SPON.forward` takes).
        Expressions are interpolated into ``input_spaces[name]`` if given, else onto the
        output space's nodes.
    output_space
        The space of the results (the model's, or another mesh's for a GNN-SPON).
    bcs
        Dirichlet conditions on ``output_space``, needed when a new context must be built
        for a model with Dirichlet DOFs: fixed ones, or, for a model whose boundary data
        depend on its inputs (:attr:`SPON.lifting_inputs`), a function of the named input
        Functions returning them, e.g. ``lambda x: DirichletBC(V, x["g"], "on_boundary")``
        (see :func:`~fe_operators.models.build.context_from_spaces`).
    context
        The mesh context to use.  Default: the model's own if it matches the spaces,
        else one built with :func:`~fe_operators.models.build.context_from_spaces`.
    input_spaces
        Spaces for inputs given as expressions.
    lifting
        Per-sample liftings ``(batch, n[, ncomp])`` (see :meth:`SPON.forward`).
    batch_size
        Samples per forward pass.
    method
        Input map method when a context is built.

    Returns
    -------
    list of firedrake.Function
        One per sample.

    Raises
    ------
    SpaceMismatchError
        Inputs or spaces that do not fit the model (from the context checks), e.g. an
        MLP-SPON asked for another mesh.
    ValueError
        A context must be built for a model with Dirichlet DOFs and ``bcs`` is missing.
    """
    from fe_operators.fem import tensor_to_functions

    spon = model.network if isinstance(model, NormalizedModel) else model
    if not isinstance(spon, SPON):
        raise TypeError(f"expected a SPON or a NormalizedModel around one, got {type(spon).__name__}")
    ctx = context
    if isinstance(inputs, (torch.Tensor, Mapping)):
        x = inputs
        n_samples = (inputs if isinstance(inputs, torch.Tensor) else next(iter(inputs.values()))).shape[0]
    else:
        samples = list(inputs)
        if not samples:
            raise ValueError("expected at least one sample, got none")
        x, spaces = _input_tensors(model, samples, output_space, input_spaces)
        n_samples = len(samples)
        if ctx is None:
            ctx = _choose_context(spon, spaces, output_space, bcs, method)
    device = next(model.parameters()).device
    if ctx is not None:
        ctx = ctx.to(device)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, n_samples, batch_size):
                part = slice(start, min(start + batch_size, n_samples))
                xb = x[part] if isinstance(x, torch.Tensor) else {k: v[part] for k, v in x.items()}
                lb = None if lifting is None else lifting[part]
                outputs.append(model(xb, context=ctx, lifting=lb))
    finally:
        model.train(was_training)
    return tensor_to_functions(torch.cat(outputs), output_space)


def _input_tensors(model: SPON | NormalizedModel, samples: Sequence[Mapping[str, Any]], output_space: Any,
                   input_spaces: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The samples as the model's inputs, and the space of each input field.

    Returns
    -------
    x
        A dict ``name -> (batch, n_k[, ncomp_k])`` tensor, or the stacked channels
        ``(batch, n, C)`` for a :class:`NormalizedModel` trained on stacked inputs.
    spaces
        Input name -> the space its values are given on (expressions and numbers are
        interpolated there).

    Raises
    ------
    KeyError
        A sample lacks an input field.
    """
    import firedrake as fd
    import ufl

    from fe_operators.fem import functions_to_tensor

    spon = model.network if isinstance(model, NormalizedModel) else model
    fields = spon.encoder.fields
    spaces = _field_spaces(spon, samples, output_space, input_spaces)
    x = {}
    for f in fields:
        V = spaces[f.name]
        funcs = []
        for s in samples:
            if f.name not in s:
                raise KeyError(f"a sample lacks input {f.name!r}; expected {[g.name for g in fields]}")
            v = s[f.name]
            if not isinstance(v, fd.Function):
                v = fd.Function(V).interpolate(v if isinstance(v, ufl.core.expr.Expr) else fd.Constant(v))
            funcs.append(v)
        x[f.name] = functions_to_tensor(funcs)
    if isinstance(model, NormalizedModel) and model.layout["input"] == "single":
        return _stacked(x, [f.name for f in fields]), spaces  # trained on stacked channels
    return x, spaces


def _choose_context(spon: SPON, spaces: Mapping[str, Any], output_space: Any, bcs: Any,
                    method: str) -> MeshContext | None:
    """The context to run with: None (the model's own) when it was built for these spaces, else a new one.

    Raises
    ------
    ValueError
        A new context is needed for a model with Dirichlet DOFs and ``bcs`` is None.
    """
    from fe_operators.models.build import context_from_spaces

    stored = spon.context
    ordered = [spaces[f.name] for f in spon.encoder.fields]
    if stored is not None and _matches(stored, ordered, output_space):
        return None
    if bcs is None and stored is not None and stored.n_free < stored.mask.numel():
        data = (" as a function of the named inputs returning them (the boundary data depend on "
                f"{list(spon.lifting_inputs)})" if spon.lifting_inputs else "")
        raise ValueError(
            "the model's output has Dirichlet DOFs and the inputs or output space differ from its "
            f"stored mesh context: pass bcs= (Dirichlet conditions on output_space{data}) or context="
        )
    named = {f.name: spaces[f.name] for f in spon.encoder.fields}
    return context_from_spaces(named, output_space, bcs, method=method,
                               **spon.processor.context_options(spon.processor.config))
