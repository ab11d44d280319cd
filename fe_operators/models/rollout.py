r"""Rollout surrogates: SPON as a one-step map of a time-dependent problem's states.

.. math::

    s_{n+1} = \mathcal{B}_{n+1}\big(s_n + \Delta_\theta(s_n, \mu)\big),

where :math:`s_n` is a state (a flat DOF vector in the order of
:meth:`~fe_operators.problems.timedep.TimeDependentProblem.state_to_array`), :math:`\mu`
the trajectory's scalar parameters, :math:`\Delta_\theta` a SPON (any processor) on the
state's DOF nodes, and :math:`\mathcal{B}_{n+1}` writes the exact Dirichlet data of step
``n + 1`` into the constrained DOFs (``torch.where`` in float64: bit for bit, whatever the
weights, at every step of a rollout).

States of a mixed space (Taylor–Hood ``(u, p)``) are seen by the network as channels on
the nodes of the space's highest-degree element (:class:`StateLayout`): a sub-space on
those nodes maps identically (velocity on ``CG2``), another one is interpolated onto them
(``CG1`` pressure into ``CG2``: exact, ``P1 ⊂ P2``) and its increment read back by
interpolation at its own nodes (the ``CG1`` nodes are ``CG2`` nodes: a selection).  The
increment is added to the state in its own layout, so a state is never round-tripped
through the node representation.

*Diagnostic* fields (``StateLayout`` field ``diagnostic``) are the exception to the
increment: fields that the equations do not evolve but determine from the others at each
time, such as the pressure of incompressible flow (the Lagrange multiplier of
``div u = 0``: no time derivative of ``p`` appears).  For them the network predicts the
*value* at ``n + 1``, and does not read the field unless it is marked ``read``:

.. math::

    s_{n+1} = \mathcal{B}_{n+1}\big(e_{n+1},\ d_{n+1}\big), \qquad
    e_{n+1} = e_n + \Delta_\theta(e_n, \mu)_e, \quad d_{n+1} = \Delta_\theta(e_n, \mu)_d,

``e`` the evolved fields and ``d`` the diagnostic ones (with ``read``, ``Δ_θ`` reads both).
An increment of the pressure
would integrate its errors over the rollout (nothing pulls ``p`` back to the velocity it
belongs to), and feeding ``p`` back as an input would let them steer the velocity;
predicted from the velocity alone, the pressure's error at a step is that of one
prediction, whatever the rollout's length.

Units: states, increments and parameters are normalised per channel by
:class:`~fe_operators.models.normalized.UnitGaussianNormalizer` buffers of the model
(:meth:`RolloutSPON.fit_normalizers`); inputs and outputs of the model are physical.

Training that survives rollouts (:mod:`fe_operators.train.rollout`): :meth:`RolloutSPON.forward`
unrolls ``k`` steps from a state (a multi-step loss back-propagates through all of
them), and in training mode adds Gaussian noise to the input state's free DOFs (std
``noise_std`` times the state's std per channel, as MeshGraphNets' training noise): the
targets stay the clean states, so the model learns to correct the errors a rollout feeds
back to it.

Nothing here imports Firedrake (the Firedrake side is :mod:`fe_operators.models.rollout_build`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.normalized import UnitGaussianNormalizer
from fe_operators.models.registry import register_model_class
from fe_operators.models.spon import SPON

__all__ = ["StateLayout", "RolloutSPON"]


class _ResizingBuffers(torch.nn.Module):
    """A module whose buffers take the stored shapes on ``load_state_dict`` (placeholders)."""

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        for name, buf in list(self._buffers.items()):
            stored = state_dict.get(prefix + name)
            if isinstance(stored, torch.Tensor) and buf is not None and stored.shape != buf.shape:
                self._buffers[name] = torch.zeros(stored.shape, dtype=stored.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, *args)


class StateLayout(_ResizingBuffers):
    """Flat states ``(batch, n_dofs)`` ↔ channels on DOF nodes ``(batch, n, C)``, and the Dirichlet mask.

    Parameters
    ----------
    fields
        One dict per sub-space of the state, in the state's order: ``offset`` (first
        flat DOF), ``n_nodes`` (its scalar nodes), ``ncomp`` (components, interleaved per
        node), ``channel`` (its first channel on the nodes), ``mapped`` (whether it is
        interpolated onto the nodes), optionally ``diagnostic`` (predicted, not evolved: see
        the module docstring; default False) and ``read`` (whether the network reads it;
        default: unless diagnostic; evolved fields are always read).
    n_nodes
        Nodes ``n`` of the network.
    mask
        ``(n_dofs,)`` bool: the DOFs with Dirichlet data.
    maps
        For each mapped field ``i``: ``{"embed": (rows, cols, values), "extract": (...)}``
        COO triplets of the interpolation ``(n, n_i)`` onto the nodes and ``(n_i, n)``
        back (int64, int64, float64); None entries for identity fields.

    Shapes
    ------
    :meth:`to_nodes`: ``(batch, n_dofs) -> (batch, n, C)``; :meth:`from_nodes` back.
    """

    def __init__(self, fields: Sequence[Mapping[str, Any]], n_nodes: int, mask: torch.Tensor | None = None,
                 maps: Sequence[Mapping[str, Sequence[torch.Tensor]] | None] | None = None) -> None:
        super().__init__()
        self.fields = [dict(offset=int(f["offset"]), n_nodes=int(f["n_nodes"]), ncomp=int(f["ncomp"]),
                            channel=int(f["channel"]), mapped=bool(f["mapped"]),
                            diagnostic=bool(f.get("diagnostic", False)),
                            read=bool(f.get("read", not f.get("diagnostic", False)))) for f in fields]
        self.n_nodes = int(n_nodes)
        self.n_dofs = sum(f["n_nodes"] * f["ncomp"] for f in self.fields)
        self.channels = sum(f["ncomp"] for f in self.fields)
        for i, f in enumerate(self.fields):
            if not f["mapped"] and f["n_nodes"] != self.n_nodes:
                raise SpaceMismatchError(f"state field {i} is not mapped but has {f['n_nodes']} nodes, the "
                                         f"network {self.n_nodes}")
        self.register_buffer("mask", torch.zeros(self.n_dofs, dtype=torch.bool) if mask is None
                             else torch.as_tensor(mask, dtype=torch.bool).clone())
        if tuple(self.mask.shape) != (self.n_dofs,):
            raise SpaceMismatchError(f"expected a Dirichlet mask of shape ({self.n_dofs},), got {tuple(self.mask.shape)}")
        channel = torch.cat([torch.arange(f["ncomp"]).repeat(f["n_nodes"]) + f["channel"] for f in self.fields])
        self.register_buffer("dof_channel", channel)  # the channel of each flat DOF
        if all(f["diagnostic"] for f in self.fields):
            raise ValueError("a state needs at least one evolved (not diagnostic) field")
        if any(not f["diagnostic"] and not f["read"] for f in self.fields):
            raise ValueError("an evolved field must be read (its increment is taken from it)")
        # derived from the fields (not stored: checkpoints written before diagnostic fields load)
        diagnostic = torch.tensor([f["diagnostic"] for f in self.fields for _ in range(f["ncomp"])], dtype=torch.bool)
        self.register_buffer("channel_diagnostic", diagnostic, persistent=False)
        self.register_buffer("dof_diagnostic", diagnostic[channel], persistent=False)
        read = torch.tensor([f["read"] for f in self.fields for _ in range(f["ncomp"])], dtype=torch.bool)
        self.register_buffer("input_channels", torch.nonzero(read).reshape(-1), persistent=False)
        self.register_buffer("dof_unread", ~read[channel], persistent=False)
        for i, f in enumerate(self.fields):
            if not f["mapped"]:
                continue
            given = maps[i] if maps is not None else None
            for kind in ("embed", "extract"):
                rows, cols, vals = given[kind] if given is not None else (
                    torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
                self.register_buffer(f"{kind}{i}_rows", torch.as_tensor(rows, dtype=torch.int64).clone())
                self.register_buffer(f"{kind}{i}_cols", torch.as_tensor(cols, dtype=torch.int64).clone())
                self.register_buffer(f"{kind}{i}_vals", torch.as_tensor(vals, dtype=torch.float64).clone())

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able structure (the maps and the mask travel in the ``state_dict``)."""
        return {"fields": [dict(f) for f in self.fields], "n_nodes": self.n_nodes}

    @property
    def n_inputs(self) -> int:
        """Channels the network reads: the evolved fields' and those of diagnostic fields marked ``read``."""
        return int(self.input_channels.numel())

    @property
    def has_diagnostic(self) -> bool:
        """Whether some field is diagnostic (predicted, not evolved)."""
        return any(f["diagnostic"] for f in self.fields)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StateLayout":
        """A layout with placeholder maps and mask; ``load_state_dict`` fills them."""
        return cls(config["fields"], config["n_nodes"])

    def _map(self, i: int, kind: str, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        rows, cols = getattr(self, f"{kind}{i}_rows"), getattr(self, f"{kind}{i}_cols")
        vals = getattr(self, f"{kind}{i}_vals").to(x.dtype)
        # node-major: gather and scatter along dim 0 move whole (batch, C) rows; index_add along
        # dim 1 of (batch, n, C) costs as much as a rollout network's layer at batch 1 on the CPU.
        # The same products summed in the same order: bit for bit the dim-1 version.
        xn = x.transpose(0, 1)
        out = x.new_zeros(n_rows, x.shape[0], x.shape[2])
        return out.index_add_(0, rows, xn.index_select(0, cols) * vals[:, None, None]).transpose(0, 1)

    def to_nodes(self, s: torch.Tensor, read_only: bool = False) -> torch.Tensor:
        """Channels on the nodes of a batch of flat states (float64 in, float64 out).

        ``read_only``: only the channels the network reads (the evolved fields' and the diagnostic
        fields' that are read), in their order.
        """
        self.check(s)
        parts = []
        for i, f in enumerate(self.fields):
            if read_only and not f["read"]:
                continue
            block = s[:, f["offset"]:f["offset"] + f["n_nodes"] * f["ncomp"]].reshape(s.shape[0], f["n_nodes"],
                                                                                        f["ncomp"])
            parts.append(self._map(i, "embed", block, self.n_nodes) if f["mapped"] else block)
        return torch.cat(parts, dim=2)

    def from_nodes(self, u: torch.Tensor) -> torch.Tensor:
        """Flat states of channels on the nodes (each field read at its own nodes)."""
        if u.ndim != 3 or tuple(u.shape[1:]) != (self.n_nodes, self.channels):
            raise SpaceMismatchError(f"expected node channels of shape (batch, {self.n_nodes}, {self.channels}), "
                                     f"got {tuple(u.shape)}")
        parts = []
        for i, f in enumerate(self.fields):
            block = u[:, :, f["channel"]:f["channel"] + f["ncomp"]]
            if f["mapped"]:
                block = self._map(i, "extract", block, f["n_nodes"])
            parts.append(block.reshape(u.shape[0], -1))
        return torch.cat(parts, dim=1)

    def check(self, s: torch.Tensor) -> None:
        """Raise SpaceMismatchError unless ``s`` is a batch of flat states."""
        if s.ndim != 2 or s.shape[1] != self.n_dofs:
            raise SpaceMismatchError(f"expected flat states of shape (batch, {self.n_dofs}), got {tuple(s.shape)}")

    def extra_repr(self) -> str:
        return f"n_dofs={self.n_dofs}, n_nodes={self.n_nodes}, channels={self.channels}"


@register_model_class
class RolloutSPON(torch.nn.Module):
    r"""A SPON one-step map ``s_{n+1} = B_{n+1}(s_n + Δ_θ(s_n, μ))`` with exact Dirichlet data at every step.

    Parameters
    ----------
    spon
        A :class:`~fe_operators.models.SPON` on the layout's nodes with inputs
        ``("state", C)`` and ``("params", P)``, ``C`` output components and zero
        Dirichlet data (the increment vanishes on the constrained nodes); built by
        :func:`fe_operators.models.rollout_build.rollout_spon_for_problem`.
    layout
        The :class:`StateLayout` of the states.
    param_names
        Names of the trajectory parameters, in the order of the ``params`` columns.
    noise_std
        Training noise on the input state (free DOFs), in units of the state's standard
        deviation per channel; 0: none.  Only in training mode.

    Attributes
    ----------
    state_normalizer, delta_normalizer, param_normalizer
        :class:`~fe_operators.models.normalized.UnitGaussianNormalizer` per channel
        (identity until :meth:`fit_normalizers`).

    Shapes
    ------
    States ``(batch, n_dofs)`` float64, parameters ``(batch, P)``; :meth:`forward` takes
    a dict ``{"state", "params", "boundary"}`` with ``boundary`` ``(batch, k, n_dofs)``
    (its Dirichlet entries are the data of steps ``1..k``; other entries are not read)
    and returns ``(batch, k, n_dofs)``.
    """

    def __init__(self, spon: SPON, layout: StateLayout, param_names: Sequence[str], *,
                 noise_std: float = 0.0) -> None:
        super().__init__()
        if not isinstance(spon, SPON):
            raise TypeError(f"expected a SPON, got {type(spon).__name__}")
        C, P = layout.channels, len(param_names)
        widths = [f.ncomp for f in spon.encoder.fields]
        C_in = layout.n_inputs
        if widths != [C_in, P] or spon.output_ncomp != C or spon.output_scalar or spon.lifting_inputs:
            raise SpaceMismatchError(
                f"the SPON of a rollout takes inputs ('state', {C_in}) (the channels it reads) and "
                f"('params', {P}) and outputs {C} components "
                f"(output_scalar False, fixed zero Dirichlet data); got inputs {widths}, {spon.output_ncomp} "
                f"components, output_scalar {spon.output_scalar}, lifting_inputs {list(spon.lifting_inputs)}")
        if not (noise_std >= 0):
            raise ValueError(f"expected noise_std >= 0, got {noise_std!r}")
        self.spon = spon
        self.layout = layout
        self.param_names = tuple(str(n) for n in param_names)
        self.noise_std = float(noise_std)
        self.state_normalizer = UnitGaussianNormalizer(torch.zeros(C), torch.ones(C), 0.0)
        self.delta_normalizer = UnitGaussianNormalizer(torch.zeros(C), torch.ones(C), 0.0)
        self.param_normalizer = UnitGaussianNormalizer(torch.zeros(P), torch.ones(P), 0.0)
        #: traced steps by input shapes while inside :meth:`inference` (None outside)
        self._traced: dict[tuple, Any] | None = None
        #: a structure kept at every step of :meth:`forward` (training) and, by default, of
        #: :meth:`rollout`: ``(batch, n_dofs) -> (batch, n_dofs)``, differentiable (e.g.
        #: :func:`fe_operators.fem.leray.leray_state_projection`); not saved with the weights
        self.projection: Callable[[torch.Tensor], torch.Tensor] | None = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def config(self) -> dict[str, Any]:
        """JSON-able configuration (weights, mesh context, maps and statistics travel in the ``state_dict``)."""
        return {"spon": self.spon.config, "layout": self.layout.config, "param_names": list(self.param_names),
                "noise_std": self.noise_std}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RolloutSPON":
        """Fresh weights and placeholders; ``load_state_dict`` fills them."""
        return cls(SPON.from_config(config["spon"]), StateLayout.from_config(config["layout"]),
                   config["param_names"], noise_std=float(config.get("noise_std", 0.0)))

    @property
    def device(self) -> torch.device:
        """Where the model's buffers (and so its inputs) live."""
        return self.layout.mask.device

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_normalizers(self, states: torch.Tensor, params: torch.Tensor, eps: float = 1e-8) -> None:
        """Fit the per-channel statistics of states, increments and parameters.

        Parameters
        ----------
        states
            ``(n_samples, n_stored, n_dofs)`` training trajectories (``n_stored >= 2``).
        params
            ``(n_samples, P)``.
        """
        states = torch.as_tensor(states, dtype=torch.float64, device=self.device)
        params = torch.as_tensor(params, dtype=torch.float64, device=self.device)
        if states.ndim != 3 or states.shape[1] < 2:
            raise ValueError(f"expected trajectories (n_samples, n_stored >= 2, n_dofs), got {tuple(states.shape)}")
        flat = states.reshape(-1, states.shape[2])
        delta = (states[:, 1:] - states[:, :-1]).reshape(-1, states.shape[2])
        free = ~self.layout.mask
        for norm, data in ((self.state_normalizer, flat), (self.delta_normalizer, delta)):
            nodes = self.layout.to_nodes(data)
            if not bool(free.all()):  # statistics of the free DOFs only: constrained increments are zero
                keep = self.layout.to_nodes(free.to(torch.float64)[None].expand(1, -1)) > 0
                nodes = torch.where(keep, nodes, torch.nan)
            mean = torch.nanmean(nodes, dim=(0, 1))
            std = torch.sqrt(torch.nanmean((nodes - mean) ** 2, dim=(0, 1)))
            norm.mean.copy_(torch.nan_to_num(mean))
            norm.std.copy_(torch.where(torch.isfinite(std) & (std > 0), std, torch.ones_like(std)))
            norm.eps.fill_(eps)
        pm, ps = params.mean(0), params.std(0, unbiased=False)
        self.param_normalizer.mean.copy_(pm)
        self.param_normalizer.std.copy_(torch.where(ps > 0, ps, torch.ones_like(ps)))
        self.param_normalizer.eps.fill_(eps)

    # ------------------------------------------------------------------ stepping
    def _check(self, s: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.as_tensor(s, dtype=torch.float64, device=self.device)
        params = torch.as_tensor(params, dtype=torch.float64, device=self.device)
        self.layout.check(s)
        if params.shape != (s.shape[0], len(self.param_names)):
            raise SpaceMismatchError(f"expected params of shape ({s.shape[0]}, {len(self.param_names)}) "
                                     f"(columns {list(self.param_names)}), got {tuple(params.shape)}")
        return s, params

    def _raw_output(self, s: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The network's physical output, float64: the increment on evolved DOFs, the new value on
        diagnostic ones; its Dirichlet entries are not zeroed."""
        layout = self.layout
        nodes = layout.to_nodes(s, read_only=True)
        norm = self.state_normalizer
        if layout.n_inputs != layout.channels:  # the read channels' statistics
            idx = layout.input_channels
            nodes = (nodes - norm.mean[idx].to(nodes)) / (norm.std[idx].to(nodes) + norm.eps.to(nodes))
        else:
            nodes = norm.encode(nodes)
        p = self.param_normalizer.encode(params)
        x = torch.cat([nodes, p[:, None, :].expand(-1, nodes.shape[1], -1)], dim=2)
        z = self.spon(x)
        out = self.delta_normalizer.decode(z)
        if layout.has_diagnostic:
            out = torch.where(layout.channel_diagnostic, self.state_normalizer.decode(z), out)
        return layout.from_nodes(out)

    def _new_state(self, s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The state the network's output makes of ``s`` (before the Dirichlet data)."""
        new = s + out
        return torch.where(self.layout.dof_diagnostic, out, new) if self.layout.has_diagnostic else new

    def increment(self, s: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``Δ_θ(s, μ)``: the physical increment of flat states, zero on the Dirichlet DOFs, float64.

        On diagnostic fields it is the predicted value minus the given one, so that
        ``s + increment`` is the step before the Dirichlet data in every case.
        """
        delta = self._new_state(s, self._raw_output(s, params)) - s
        return torch.where(self.layout.mask, torch.zeros((), dtype=delta.dtype, device=delta.device), delta)

    def step(self, s: torch.Tensor, params: torch.Tensor, boundary: torch.Tensor | None = None) -> torch.Tensor:
        """One step ``s_{n+1} = B(s_n + Δ_θ(s_n, μ))``.

        Parameters
        ----------
        s
            ``(batch, n_dofs)`` states.
        params
            ``(batch, P)``.
        boundary
            ``(batch, n_dofs)``: its Dirichlet entries are the data of the new state;
            default: those of ``s`` (time-independent data).
        """
        s, params = self._check(s, params)
        g = s if boundary is None else torch.as_tensor(boundary, dtype=torch.float64, device=self.device)
        if self._traced is not None:
            traced = self._traced_step(s, params, g)
            if traced is not None:
                return traced(s, params, g)
        return self._step(s, params, g)

    def _step(self, s: torch.Tensor, params: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # the Dirichlet entries of s + Δ are overwritten here: no need to zero Δ's first (same states)
        return torch.where(self.layout.mask, g, self._new_state(s, self._raw_output(s, params)))

    def _traced_step(self, s: torch.Tensor, params: torch.Tensor, g: torch.Tensor) -> Any:
        """The step traced and frozen for these shapes (inside :meth:`inference`), or None where it differs.

        The trace bakes in the weights and the processor's frozen products; a kernel that
        escaped the trace would be baked in as a constant too, so the traced step is kept
        only where it gives the plain step's states bit for bit on the tracing input and on
        a second one (the first step's output).  Anything that fails to trace: None.
        """
        key = (tuple(s.shape), tuple(params.shape), tuple(g.shape))
        if key not in self._traced:
            self._traced[key] = None
            plain = self._step(s, params, g)  # also fills the processor's frozen cache the trace reads
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the shape checks, fixed per key
                    fn = torch.jit.freeze(torch.jit.trace(_PlainStep(self).eval(), (s, params, g), check_trace=False))
                    ok = torch.equal(fn(s, params, g), plain) and \
                        torch.equal(fn(plain, params, g), self._step(plain, params, g))
            except (RuntimeError, TypeError, ValueError):
                ok = False
            if ok:
                self._traced[key] = fn
        return self._traced[key]

    def add_noise(self, s: torch.Tensor) -> torch.Tensor:
        """``s`` plus Gaussian noise on its free DOFs (std ``noise_std`` × the state's std per channel)."""
        if self.noise_std == 0:
            return s
        std = (self.state_normalizer.std + self.state_normalizer.eps)[self.layout.dof_channel] * self.noise_std
        noise = torch.randn(s.shape, dtype=s.dtype, device=s.device) * std.to(s.dtype)
        keep = self.layout.mask | self.layout.dof_unread  # fields the network does not read
        return torch.where(keep, s, s + noise)

    def forward(self, x: Mapping[str, torch.Tensor], noise: bool | None = None) -> torch.Tensor:
        """Unroll ``k`` steps from ``x["state"]``: ``(batch, k, n_dofs)``.

        ``k`` is ``x["boundary"].shape[1]``; gradients flow through all steps.  ``noise``:
        whether to add the training noise to the first input (default: in training mode;
        the pushforward trick's gradient segment starts from a model state and passes False).
        """
        s, params = self._check(x["state"], x["params"])
        boundary = torch.as_tensor(x["boundary"], dtype=torch.float64, device=self.device)
        if boundary.ndim != 3 or boundary.shape[0] != s.shape[0] or boundary.shape[2] != s.shape[1]:
            raise SpaceMismatchError(f"expected boundary data of shape ({s.shape[0]}, k, {s.shape[1]}), got "
                                     f"{tuple(boundary.shape)}")
        if self.training if noise is None else noise:
            s = self.add_noise(s)
        out = []
        for j in range(boundary.shape[1]):
            s = self.step(s, params, boundary[:, j])
            if self.projection is not None:  # the structure the rollout keeps, inside the loss too
                s = torch.where(self.layout.mask, boundary[:, j], self.projection(s))
            out.append(s)
        return torch.stack(out, dim=1)

    @contextlib.contextmanager
    def inference(self, traced: bool = True) -> Iterator["RolloutSPON"]:
        """Steps with constant weights: evaluation mode, no autograd, the processor frozen, the step traced.

        Inside, :meth:`step` gives the same states as outside (bit for bit: the processor only
        reuses what depends on its weights and the mesh, :meth:`Processor.frozen
        <fe_operators.models.processors.base.Processor.frozen>`); the weights must not change
        inside.  With ``traced`` (CPU models), the first step of each input shape is traced
        (``torch.jit.trace``, then ``torch.jit.freeze``: the weights and frozen products become
        constants of one graph, without Python's per-module dispatch) and kept where it gives
        the plain step's states bit for bit (checked on two steps; otherwise the plain step
        runs).  :meth:`rollout` runs in it.  Yields the model.

        Examples
        --------
        >>> with model.inference():                      # doctest: +SKIP
        ...     s = model.step(s, params)                # e.g. one step of a batch-1 rollout
        """
        was, outer = self.training, self._traced
        self.eval()
        try:
            with torch.no_grad(), self.spon.processor.frozen():
                if not (traced and self.device.type == "cpu"):
                    self._traced = None
                elif outer is None:
                    self._traced = {}  # nested (rollout() inside inference()): the outer traces stay
                yield self
        finally:
            self._traced = outer
            self.train(was)

    @torch.no_grad()
    def rollout(self, s0: torch.Tensor, params: torch.Tensor, n_steps: int,
                boundary: torch.Tensor | None = None,
                project: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """All states of a rollout of ``n_steps`` steps from ``s0``: ``(batch, n_steps + 1, n_dofs)``.

        Parameters
        ----------
        s0
            ``(batch, n_dofs)`` initial states (returned as the first state).
        params
            ``(batch, P)``.
        n_steps
            Steps.
        boundary
            ``(batch, n_steps + 1, n_dofs)`` whose Dirichlet entries are the data at each
            step (entry 0 unused), e.g. a reference trajectory or
            :meth:`fe_operators.problems.heat.HeatEquation.boundary_values`; default: the
            data of ``s0`` at every step (time-independent data).
        project
            A structure kept at every step: applied to each new state before the next step
            is taken from it, ``(batch, n_dofs) -> (batch, n_dofs)`` float64, e.g. the Leray
            projection of the velocity block
            (:func:`fe_operators.fem.leray.leray_state_projection`); the Dirichlet
            entries are set to the step's data again after it, so they stay exact whatever
            it does.  Default: :attr:`projection` (none unless set).
        """
        project = self.projection if project is None else project
        with self.inference():
            s, params = self._check(s0, params)
            if boundary is not None:
                boundary = torch.as_tensor(boundary, dtype=torch.float64, device=self.device)
                if tuple(boundary.shape) != (s.shape[0], int(n_steps) + 1, s.shape[1]):
                    raise SpaceMismatchError(f"expected boundary data of shape ({s.shape[0]}, {int(n_steps) + 1}, "
                                             f"{s.shape[1]}), got {tuple(boundary.shape)}")
            out = [s]
            for j in range(1, int(n_steps) + 1):
                g = None if boundary is None else boundary[:, j]
                s = self.step(s, params, g)
                if project is not None:
                    s = torch.where(self.layout.mask, s if g is None else g, project(s))
                out.append(s)
            return torch.stack(out, dim=1)

    def extra_repr(self) -> str:
        return f"param_names={list(self.param_names)}, noise_std={self.noise_std:g}"


class _PlainStep(torch.nn.Module):
    """``(s, params, g) -> RolloutSPON._step``: the module :meth:`RolloutSPON.inference` traces."""

    def __init__(self, model: RolloutSPON) -> None:
        super().__init__()
        self.model = model

    def forward(self, s: torch.Tensor, params: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.model._step(s, params, g)
