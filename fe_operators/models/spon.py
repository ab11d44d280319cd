"""SPON: structure-preserving operator network ``u_θ = D ∘ P_θ ∘ E`` (docs/design.md §3)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.context_buffers import ContextBuffers
from fe_operators.models.decoder import DirichletDecoder, affine_lifting
from fe_operators.models.encoder import InputEncoder, InputField, Inputs, as_fields
from fe_operators.models.processors.base import PROCESSORS, Processor, processor_class, processor_options

__all__ = ["SPON", "DECODERS"]

#: SPON's decoders: ``"dirichlet"`` (``g_h + Z z`` on the output's DOFs) and ``"divergence_free"``
#: (that, then a fixed Leray projection onto exactly divergence-free P2 velocities on the
#: Alfeld-refined mesh, :mod:`fe_operators.fem.leray`; attached with :meth:`SPON.set_projection`)
DECODERS = ("dirichlet", "divergence_free")


class SPON(torch.nn.Module):
    r"""Encoder → processor → Dirichlet decoder, exact on the Dirichlet boundary.

    .. math:: u_\theta(x) = g_h + Z\,P_\theta(E x)

    1. **Encoder** :class:`~fe_operators.models.encoder.InputEncoder`: the input fields
       onto the output space's DOF nodes (fixed sparse maps of the mesh context), stacked
       as channels, in float64; then cast to the processor's dtype.
    2. **Processor** (a registered :class:`~fe_operators.models.processors.base.Processor`:
       ``"mlp"`` for one mesh, ``"gnn"`` and ``"multigrid"`` for any mesh of the domain):
       the free DOF values ``z``.
    3. **Decoder** :class:`~fe_operators.models.decoder.DirichletDecoder`: ``z`` written
       into a float64 copy of the lifting ``g_h = g_0 + Σ_k L_k x_k``: the context's
       fixed part ``g_0`` plus, where the boundary data depend on the inputs, the
       context's sparse maps ``L_k`` of the *physical* inputs (the problem's Dirichlet
       data, :func:`fe_operators.fem.lifting.dirichlet_map`); or ``lifting=`` per call.

    The mesh context (graph, coordinates, Dirichlet split, input maps) is separate from
    the weights: the model keeps a default one as buffers (in the ``state_dict``), and
    ``forward(..., context=other)`` runs a mesh-agnostic model on another mesh.

    Parameters
    ----------
    processor
        A registered :class:`~fe_operators.models.processors.base.Processor`.
    inputs
        Input fields in channel order (``InputField``, ``"name"``, ``("name", ncomp)``).
    output_ncomp
        Output components per DOF node.
    output_scalar
        Scalar output space: outputs are ``(batch, n)`` instead of ``(batch, n, 1)``.
    lifting_inputs
        Names of the input fields the boundary data depend on (Poisson's ``("g",)``,
        Stokes' ``("inflow",)``; empty: fixed data).  Every context the model runs with
        must have lifting maps for exactly these fields (:meth:`check_context`), so a
        model never silently imposes another mesh's or a zero lifting.
    context
        The default :class:`MeshContext`.
    decoder
        ``"dirichlet"`` (default) or ``"divergence_free"``: for a 2D P2 velocity output,
        the Dirichlet decoder's field mapped by a fixed Leray projection
        (:class:`~fe_operators.fem.leray.LerayProjection`, given to
        :meth:`set_projection`; :func:`~fe_operators.models.build.spon_for_problem`
        attaches it): outputs are then exactly divergence-free P2 velocities on the
        Alfeld refinement of the mesh, ``(batch, n_fine, 2)``, with the Dirichlet values
        still exact; compare them with ``model.projection.embed(target)``.

    Shapes
    ------
    ``x``: ``(batch, n_in, channels)`` or a dict ``name -> (batch, n_in_k[, ncomp_k])``;
    ``lifting``: ``(batch, n[, ncomp])``; output ``(batch, n)`` (scalar) or
    ``(batch, n, ncomp)``, float64, the DOF-tensor layout of docs/design.md §2.1.

    Examples
    --------
    >>> from fe_operators.models.build import context_from_problem   # doctest: +SKIP
    >>> ctx = context_from_problem(problem)
    >>> model = SPON.from_context(ctx, [("f", 1), ("g", 1)], "gnn")  # ctx lifts g: model.lifting_inputs == ("g",)
    >>> u = model(x)                  # (batch, n), exact on the boundary
    >>> u2 = model(x2, context=context_from_problem(problem_on_finer_mesh))

    For a Problem in one call: :func:`fe_operators.models.build.spon_for_problem`.
    """

    def __init__(self, processor: torch.nn.Module, inputs: Sequence[Any], *, output_ncomp: int = 1,
                 output_scalar: bool = True, lifting_inputs: Sequence[str] = (),
                 context: MeshContext | None = None, decoder: str = "dirichlet") -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder: expected one of {list(DECODERS)}, got {decoder!r}")
        self.decoder_type = decoder
        self.projection: Any = None  # the Leray projection of a divergence-free decoder (not in the state_dict)
        if not isinstance(processor, Processor) or PROCESSORS.get(processor.name) is not type(processor):
            raise TypeError(f"expected an instance of a registered processor class ({sorted(PROCESSORS)}), got "
                            f"{type(processor).__name__}")
        self.processor_type = processor.name
        self.encoder = InputEncoder(as_fields(inputs))
        self.processor = processor
        self.decoder = DirichletDecoder()
        self.output_ncomp, self.output_scalar = int(output_ncomp), bool(output_scalar)
        if self.output_scalar and self.output_ncomp != 1:
            raise ValueError(f"a scalar output has one component, got output_ncomp={output_ncomp}")
        names = [f.name for f in self.encoder.fields]
        lifting_inputs = (lifting_inputs,) if isinstance(lifting_inputs, str) else tuple(lifting_inputs)
        if not set(lifting_inputs) <= set(names):
            raise ValueError(f"lifting_inputs {list(lifting_inputs)} are not all input fields; inputs are {names}")
        # in channel order, as the context's maps
        self.lifting_inputs = tuple(n for n in names if n in lifting_inputs)
        self.register_load_state_dict_post_hook(_check_loaded_context)
        self.context_buffers = ContextBuffers()
        if context is not None:
            self.set_context(context)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_context(cls, context: MeshContext, inputs: Sequence[Any], processor: str = "gnn", *,
                     output_scalar: bool | None = None, lifting_input: str | None = None,
                     decoder: str = "dirichlet", **options: Any) -> "SPON":
        """Build for a mesh context: processor sizes come from it, it becomes the default.

        Parameters
        ----------
        context
            The training mesh's context.
        inputs
            Input fields (as for the constructor).
        processor
            A registered processor name (``"gnn"``, ``"mlp"``, ``"multigrid"``, see
            :data:`~fe_operators.models.processors.base.PROCESSORS`).
        output_scalar
            None: scalar iff the context has one component.
        lifting_input
            Shorthand for boundary data that are one input field's values on the
            constrained DOFs (Poisson's ``"g"``): the context gets that field's
            injection as its lifting map (:meth:`MeshContext.with_lifting_input`).
            Default: the context's own lifting maps
            (:func:`~fe_operators.models.build.context_from_problem` has the problem's).  The model's :attr:`lifting_inputs` are the fields with a map.
        **options
            The processor's options (the fields of its ``Options`` dataclass; defaults
            for the rest), e.g. ``width=32, depth=2`` for ``"gnn"``.

        Raises
        ------
        ConfigError
            Unknown processor, unknown option, or a bad option value (naming the option).
        SpaceMismatchError
            ``lifting_input`` with other components than the output.
        """
        opts = processor_options(processor, options)
        fields = as_fields(inputs)
        names = [f.name for f in fields]
        if lifting_input is not None:
            if lifting_input not in names:
                raise ValueError(f"lifting_input {lifting_input!r} is not an input field; inputs are {names}")
            k = names.index(lifting_input)
            if fields[k].ncomp != context.ncomp:
                raise SpaceMismatchError(f"lifting_input {lifting_input!r} has {fields[k].ncomp} components, the "
                                         f"output {context.ncomp}")
            context = context.with_lifting_input(k)
        channels = sum(f.ncomp for f in fields)
        proc = processor_class(processor).for_context(context, channels, context.ncomp, opts)
        scalar = context.ncomp == 1 if output_scalar is None else output_scalar
        lifting_inputs = tuple(names[k] for k in context.lifting_inputs if k < len(names))
        return cls(proc, fields, output_ncomp=context.ncomp, output_scalar=scalar,
                   lifting_inputs=lifting_inputs, context=context, decoder=decoder)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor configuration (the mesh context travels in the state_dict)."""
        return {
            "processor": {"type": self.processor_type, **self.processor.config},
            "inputs": [f.to_dict() for f in self.encoder.fields],
            "output_ncomp": self.output_ncomp,
            "output_scalar": self.output_scalar,
            "lifting_inputs": list(self.lifting_inputs),
            **({} if self.decoder_type == "dirichlet" else {"decoder": self.decoder_type}),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SPON":
        """A model with fresh weights and no context; ``load_state_dict`` fills both."""
        cfg = dict(config)
        proc_cfg = dict(cfg.pop("processor"))
        proc = processor_class(proc_cfg.pop("type"), "processor.type").from_config(proc_cfg)
        return cls(proc, [InputField(**f) for f in cfg.pop("inputs")], **cfg)

    # ------------------------------------------------------------------ context
    @property
    def mesh_agnostic(self) -> bool:
        """Whether the model runs on other meshes of the domain (its processor's ``mesh_agnostic``)."""
        return bool(self.processor.mesh_agnostic)

    @property
    def context(self) -> MeshContext | None:
        """The stored default mesh context."""
        return self.context_buffers.get()

    def set_context(self, context: MeshContext | None) -> None:
        """Replace the stored default context (on this model's device)."""
        if context is not None:
            context = context.to(next(self.parameters()).device)
            self.check_context(context)
        self.context_buffers.set(context)

    def check_context(self, context: MeshContext) -> None:
        """Check that the model can run with ``context``.

        Raises
        ------
        SpaceMismatchError
            Other output components or number of input fields, lifting maps for other
            input fields than :attr:`lifting_inputs`, or (MLP) another mesh.
        ValueError
            The context is on another device than the model.
        """
        if not isinstance(context, MeshContext):
            raise TypeError(f"expected a MeshContext, got {type(context).__name__}")
        if context.ncomp != self.output_ncomp:
            raise SpaceMismatchError(
                f"the model outputs {self.output_ncomp} components per node, the context's output space has "
                f"{context.ncomp}"
            )
        if len(context.input_maps) != len(self.encoder.fields):
            raise SpaceMismatchError(
                f"the context maps {len(context.input_maps)} input fields, the model takes "
                f"{len(self.encoder.fields)}"
            )
        lifted = tuple(self.encoder.fields[k].name for k in context.lifting_inputs)
        if lifted != self.lifting_inputs:
            if self.lifting_inputs:
                fix = ("build the context with context_from_problem(problem) or context_for_model(model, problem), "
                       "or context_from_spaces(..., bcs=<a function of the named inputs returning the DirichletBCs>) "
                       "(fe_operators.models.build)")
            else:
                fix = "this model was built with fixed boundary data; rebuild it from a context with lifting maps"
            raise SpaceMismatchError(
                f"the model's boundary data depend on the input fields {list(self.lifting_inputs)}, the mesh "
                f"context lifts {list(lifted)}: {fix}"
            )
        self.processor.check_context(context)
        device = next(self.parameters()).device
        if context.device != device:
            raise ValueError(f"the mesh context is on {context.device}, the model on {device}; pass context.to(device)")

    def _context(self, context: MeshContext | None) -> MeshContext:
        if context is None:
            stored = self.context
            if stored is None:
                raise ValueError(
                    "this SPON holds no mesh context: pass context=context_from_spaces(...) (fe_operators.models.build), or "
                    "load a state_dict that has one"
                )
            return stored
        self.check_context(context)
        return context

    # ------------------------------------------------------------------ forward
    def encode(self, x: Inputs, context: MeshContext | None = None) -> torch.Tensor:
        """The encoder's output: channels on the processor's nodes, ``(batch, n, C)`` float64."""
        return self.encoder(x, self._context(context))

    @property
    def uses_boundary_data(self) -> bool:
        """Whether the processor reads the lifting (:attr:`Processor.uses_boundary_data`)."""
        return bool(self.processor.uses_boundary_data)

    def lifting_from_inputs(self, x: Inputs, context: MeshContext | None = None) -> torch.Tensor:
        """The lifting ``g_0 + Σ_k L_k x_k`` of physical inputs ``x``, ``(batch, n, ncomp)`` float64.

        For callers that normalise inputs: compute the lifting from the *physical* inputs
        and pass it to :meth:`forward`.
        """
        ctx = self._context(context)
        parts = self.encoder.split(x, ctx)
        g = affine_lifting(parts, ctx)
        return g.expand(parts[0].shape[0], *g.shape) if g.ndim == 2 else g

    def _boundary_data(self, parts: list[torch.Tensor], context: MeshContext,
                       lifting: torch.Tensor | None) -> torch.Tensor:
        """The lifting: ``lifting`` if given (as ``(batch, n, ncomp)``), else the context's
        affine lifting of the physical input fields ``parts``."""
        if lifting is not None:
            return lifting.unsqueeze(-1) if lifting.ndim == 2 else lifting
        return affine_lifting(parts, context)

    def forward(self, x: Inputs, context: MeshContext | None = None,
                lifting: torch.Tensor | None = None) -> torch.Tensor:
        """Output DOF tensors, exact on the Dirichlet DOFs.

        Parameters
        ----------
        x
            Inputs (see the class's Shapes).
        context
            Mesh context (default: the stored one).
        lifting
            Per-sample boundary data on the output nodes, ``(batch, n[, ncomp])`` (values
            off the Dirichlet DOFs are ignored).  Default: the context's lifting of ``x``
            (:func:`~fe_operators.models.decoder.affine_lifting`).

        Returns
        -------
        torch.Tensor
            ``(batch, n)`` or ``(batch, n, ncomp)`` float64.
        """
        ctx = self._context(context)
        parts = self.encoder.split(x, ctx)
        nodes = self.encoder.nodes(parts, ctx)
        lifting = self._boundary_data(parts, ctx, lifting)
        dtype = next(self.processor.parameters()).dtype
        if self.processor.uses_boundary_data:
            z = self.processor(nodes.to(dtype), ctx, boundary=lifting.to(dtype))
        else:
            z = self.processor(nodes.to(dtype), ctx)
        u = self.decoder(z, ctx, lifting)
        if self.decoder_type == "divergence_free":
            return self._leray(ctx)(u)
        return u.squeeze(-1) if self.output_scalar else u

    def set_projection(self, projection: Any) -> None:
        """Attach the Leray projection of a ``"divergence_free"`` decoder (for the mesh it runs on).

        ``projection``: a :class:`~fe_operators.fem.leray.LerayProjection` of the output
        space (:func:`~fe_operators.fem.leray.leray_projection`); it is mesh data outside
        the ``state_dict``: attach it again after loading a checkpoint.
        """
        self.projection = projection

    def _leray(self, ctx: MeshContext) -> Any:
        P = self.projection
        if P is None:
            raise ValueError("this SPON has a divergence_free decoder but no Leray projection: call "
                             "model.set_projection(fe_operators.fem.leray.leray_projection(V, bcs)) with its velocity "
                             "space and Dirichlet conditions")
        if (P.n_coarse, P.ncomp) != tuple(ctx.mask.shape):
            raise SpaceMismatchError(f"the Leray projection maps {P.n_coarse} nodes x {P.ncomp} components, the "
                                     f"mesh context has {tuple(ctx.mask.shape)}: attach the projection of this mesh")
        return P

    def impose_dirichlet(self, u: torch.Tensor, x: Inputs, context: MeshContext | None = None,
                         lifting: torch.Tensor | None = None) -> torch.Tensor:
        """Overwrite the Dirichlet DOFs of ``u`` with the boundary data of the *physical* inputs ``x``.

        :meth:`forward` is exact by itself; this restores exactness when the caller
        changes units around it (a normalizer encodes the inputs the lifting is computed
        from, or decodes the outputs): the boundary values then come from ``lifting`` or
        the context's lifting of the physical ``x``, in float64, bit for bit.  No gradient
        flows through the constrained DOFs (they are data).

        Shapes
        ------
        ``u``: the output layout of :meth:`forward`; ``x`` and ``lifting`` as there.
        """
        ctx = self._context(context)
        g = self._boundary_data(self.encoder.split(x, ctx), ctx, lifting)
        u3 = u.unsqueeze(-1) if self.output_scalar else u
        if u3.ndim != 3 or u3.shape[1:] != ctx.mask.shape:
            raise SpaceMismatchError(f"expected outputs of shape (batch, {', '.join(map(str, ctx.mask.shape))}), "
                                     f"got {tuple(u.shape)}")
        out = torch.where(ctx.mask, g.to(device=u.device, dtype=torch.float64), u3.to(torch.float64))
        return out.squeeze(-1) if self.output_scalar else out

    def extra_repr(self) -> str:
        return f"processor={self.processor_type!r}, lifting_inputs={list(self.lifting_inputs)!r}"


def _check_loaded_context(model: SPON, incompatible_keys: Any) -> None:
    """After loading a state_dict: check the stored context against the model (a context
    without the model's lifting maps would impose fixed data)."""
    ctx = model.context
    if ctx is not None:
        model.check_context(ctx)
