r"""Normalisation as part of the model: physical values in, physical values out.

A trained operator is the composition

.. math:: x \mapsto D_{\text{out}}\big(N_\theta(E_{\text{in}}(x))\big)

of the input normalizer's encoding :math:`E_{\text{in}}`, the network :math:`N_\theta`
and the output normalizer's decoding :math:`D_{\text{out}}`.  :class:`NormalizedModel`
is that composition as one ``torch.nn.Module``: the normalizers' statistics are buffers
of the model (they move with ``.to(device)`` and travel in its ``state_dict``), so the
Trainer, checkpoints, :func:`~fe_operators.train.load_model`,
:func:`~fe_operators.models.predict` and ``fe-operators evaluate`` all apply the same
module, and losses and metrics are FE norms of its (physical) outputs.  A network with
exact Dirichlet values (one with ``impose_dirichlet``, such as
:class:`~fe_operators.models.SPON`) stays exact: after decoding, the constrained DOFs are
set from the *physical* inputs (the network saw encoded ones).

Nothing here imports Firedrake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import torch

__all__ = ["UnitGaussianNormalizer", "RunningMoments", "NormalizedModel", "InputNormalizer", "Inputs",
           "NormalizerLayout"]

#: a batch of inputs: stacked channels ``(batch, n, C)``, or a dict by input name
Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


class UnitGaussianNormalizer(torch.nn.Module):
    r"""Affine normalisation :math:`x \mapsto (x - \mu) / (\sigma + \varepsilon)`.

    Mean and standard deviation are float64 buffers, so the normalizer moves with
    ``.to(device)`` and round-trips through ``state_dict``; loading a ``state_dict`` takes
    the stored statistics whatever their shape (they are data, not architecture).
    Encoding and decoding cast them to the dtype and device of the data.

    Parameters
    ----------
    mean, std
        Statistics, broadcastable against one sample (and so against a batch).
    eps
        Added to ``std`` (guards constant DOFs such as Dirichlet nodes).

    Shapes
    ------
    ``mean``/``std``: the sample shape (``per="dof"``) or its trailing channel shape
    (``per="global"``); data ``(..., *sample_shape)``.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64).clone())
        self.register_buffer("eps", torch.tensor(float(eps), dtype=torch.float64))

    @classmethod
    def fit(cls, data: torch.Tensor | np.ndarray, *, per: str = "dof", eps: float = 1e-8) -> UnitGaussianNormalizer:
        """Fit to a batch ``(batch, n_nodes[, channels])``.

        Parameters
        ----------
        data
            The training samples, batch first.
        per
            ``"dof"``: one mean/std per DOF and channel (over the batch);
            ``"global"``: one per channel (over batch and nodes).
        eps
            See the class.
        """
        stats = RunningMoments(per)
        stats.add(torch.as_tensor(data, dtype=torch.float64))
        return stats.normalizer(eps)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> UnitGaussianNormalizer:
        """Rebuild a normalizer from :meth:`state_dict` output."""
        return cls(state["mean"], state["std"], float(state["eps"]))

    @classmethod
    def placeholder(cls) -> UnitGaussianNormalizer:
        """The identity with scalar statistics, to be filled by ``load_state_dict(assign=True)``."""
        return cls(torch.zeros(()), torch.ones(()), 0.0)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        for name in ("mean", "std", "eps"):  # take the stored shapes: the defaults then copy the values
            stored = state_dict.get(prefix + name)
            if isinstance(stored, torch.Tensor) and stored.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros(stored.shape, dtype=torch.float64, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``."""
        mean, std = self.mean.to(x), self.std.to(x)
        return (x - mean) / (std + self.eps.to(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`encode`."""
        mean, std = self.mean.to(z), self.std.to(z)
        return z * (std + self.eps.to(z)) + mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(x)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}, eps={float(self.eps):g}"


class RunningMoments:
    """Streaming mean and variance of batches (Chan et al.'s pairwise update), float64.

    Parameters
    ----------
    per
        ``"dof"`` (statistics per DOF and channel) or ``"global"`` (per channel).
    """

    def __init__(self, per: str) -> None:
        if per not in ("dof", "global"):
            raise ValueError(f"expected per='dof' or per='global', got {per!r}")
        self.per = per
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        """Add a batch ``(batch, n_nodes[, channels])``."""
        if x.ndim < 2:
            raise ValueError(f"expected a batch of shape (batch, n_nodes[, channels]), got {tuple(x.shape)}")
        x = x.to(torch.float64)
        dims = (0,) if self.per == "dof" else (0, 1)
        n = int(np.prod([x.shape[d] for d in dims]))
        if n == 0:
            return
        mean = x.mean(dim=dims)
        m2 = ((x - mean) ** 2).sum(dim=dims)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def normalizer(self, eps: float = 1e-8) -> UnitGaussianNormalizer:
        """The fitted normalizer (population standard deviation)."""
        if self.mean is None:
            raise ValueError("cannot fit a normalizer to no samples")
        return UnitGaussianNormalizer(self.mean, torch.sqrt(self.m2 / self.count), eps)


#: what normalizes the inputs: one normalizer (stacked inputs), a dict by input name, or nothing
InputNormalizer = Union[UnitGaussianNormalizer, Mapping[str, UnitGaussianNormalizer], None]

#: the structure of a model's normalizers, as plain data (stored in checkpoints):
#: ``{"input": None | "single" | [input names], "output": None | "single"}``
NormalizerLayout = dict[str, Any]


@runtime_checkable
class ExactDirichlet(Protocol):
    """A network that can overwrite the Dirichlet DOFs of its outputs from physical inputs."""

    def impose_dirichlet(self, u: torch.Tensor, x: Inputs, **kwargs: Any) -> torch.Tensor:
        """``u`` with its Dirichlet DOFs set from the boundary data of ``x``."""


class NormalizedModel(torch.nn.Module):
    r"""A network between its input and output normalizers: physical values in and out.

    .. math:: u = D_{\text{out}}\big(N_\theta(E_{\text{in}}(x))\big)

    then, for a network with ``impose_dirichlet`` (SPON) and any normalizer, the
    Dirichlet DOFs of ``u`` are set from the physical ``x`` (bit for bit; for SPON the
    context's lifting ``g_0 + Σ_k L_k x_k``, so input-dependent data such as Poisson's
    ``g`` or Stokes' inflow ``d g`` come from the physical inputs).  Without normalizers
    the model is the network itself.

    Parameters
    ----------
    network
        Maps encoded inputs to encoded outputs (e.g. a :class:`~fe_operators.models.SPON`).
    input_normalizer
        One :class:`UnitGaussianNormalizer` for stacked tensor inputs, a mapping input
        name -> normalizer for dict inputs (inputs without one pass through), or None.
    output_normalizer
        A :class:`UnitGaussianNormalizer`, or None.

    Shapes
    ------
    ``x``: ``(batch, n_nodes, channels)`` or a dict of ``(batch, n_nodes[, ncomp])``;
    output: ``(batch, n_nodes[, ncomp])`` (the DOF-tensor layout of docs/design.md §2.1).

    Examples
    --------
    >>> x_norm, y_norm = train.fit_normalizers(per="global")        # doctest: +SKIP
    >>> model = NormalizedModel(SPON.from_context(ctx, ["f", "g"], "gnn"), x_norm, y_norm)
    >>> u = model(x)                            # physical units, exact on the boundary
    """

    def __init__(self, network: torch.nn.Module, input_normalizer: InputNormalizer = None,
                 output_normalizer: UnitGaussianNormalizer | None = None) -> None:
        super().__init__()
        if isinstance(network, NormalizedModel):
            raise TypeError("the network is already a NormalizedModel; pass its .network")
        self.network = network
        self.input_normalizer: UnitGaussianNormalizer | torch.nn.ModuleDict | None
        if input_normalizer is None or isinstance(input_normalizer, UnitGaussianNormalizer):
            self.input_normalizer = input_normalizer
        elif isinstance(input_normalizer, Mapping) and all(
                isinstance(m, UnitGaussianNormalizer) for m in input_normalizer.values()):
            self.input_normalizer = torch.nn.ModuleDict(dict(input_normalizer))
        else:
            raise TypeError("expected input_normalizer: a UnitGaussianNormalizer, a mapping name -> "
                            f"UnitGaussianNormalizer, or None; got {type(input_normalizer).__name__}")
        if output_normalizer is not None and not isinstance(output_normalizer, UnitGaussianNormalizer):
            raise TypeError(f"expected output_normalizer: a UnitGaussianNormalizer or None, got "
                            f"{type(output_normalizer).__name__}")
        self.output_normalizer = output_normalizer

    # ------------------------------------------------------------------ structure
    @property
    def layout(self) -> NormalizerLayout:
        """Which normalizers the model has (plain data, see :data:`NormalizerLayout`)."""
        x = self.input_normalizer
        inputs = None if x is None else "single" if isinstance(x, UnitGaussianNormalizer) else list(x)
        return {"input": inputs, "output": None if self.output_normalizer is None else "single"}

    @classmethod
    def with_layout(cls, network: torch.nn.Module, layout: Mapping[str, Any]) -> NormalizedModel:
        """A model with placeholder normalizers of ``layout``, for ``load_state_dict(assign=True)``.

        Raises
        ------
        ValueError
            ``layout`` is not a :data:`NormalizerLayout`.
        """
        x, y = layout.get("input"), layout.get("output")
        if x is None:
            x_norm = None
        elif x == "single":
            x_norm = UnitGaussianNormalizer.placeholder()
        elif isinstance(x, (list, tuple)) and all(isinstance(n, str) for n in x):
            x_norm = {n: UnitGaussianNormalizer.placeholder() for n in x}
        else:
            raise ValueError(f"expected the input normalizer layout None, 'single' or a list of names, got {x!r}")
        if y not in (None, "single"):
            raise ValueError(f"expected the output normalizer layout None or 'single', got {y!r}")
        return cls(network, x_norm, None if y is None else UnitGaussianNormalizer.placeholder())

    @property
    def normalizes(self) -> bool:
        """Whether any normalizer is set (else the model is its network)."""
        return self.input_normalizer is not None or self.output_normalizer is not None

    # ------------------------------------------------------------------ units
    def encode_inputs(self, x: Inputs) -> Inputs:
        """Encode a batch of physical inputs.

        Raises
        ------
        TypeError
            A tensor with normalizers by name, or a dict with a single normalizer.
        """
        norm = self.input_normalizer
        if norm is None:
            return x
        if isinstance(x, torch.Tensor):
            if not isinstance(norm, UnitGaussianNormalizer):
                raise TypeError("stacked (tensor) inputs take one UnitGaussianNormalizer, the model has one by name")
            return norm.encode(x)
        if isinstance(norm, UnitGaussianNormalizer):
            raise TypeError("dict inputs take normalizers by name, the model has a single one")
        return {n: (norm[n].encode(v) if n in norm else v) for n, v in x.items()}

    def decode_output(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a batch of network outputs to physical units."""
        return z if self.output_normalizer is None else self.output_normalizer.decode(z)

    def _network_kwargs(self, x: Inputs, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for the network; for a SPON whose processor reads the boundary data,
        the lifting of the *physical* inputs in the network's (encoded) output units."""
        net = self.network
        if not (self.normalizes and getattr(net, "uses_boundary_data", False)):
            return kwargs
        g = kwargs.get("lifting")
        if g is None:
            g = net.lifting_from_inputs(x, kwargs.get("context"))
            g = g.squeeze(-1) if net.output_scalar else g
        return {**kwargs, "lifting": self.output_normalizer.encode(g) if self.output_normalizer is not None else g}

    def forward(self, x: Inputs, **kwargs: Any) -> torch.Tensor:
        """Physical outputs for physical inputs.

        Parameters
        ----------
        x
            Physical inputs (see the class's Shapes).
        **kwargs
            Passed to the network (and to its ``impose_dirichlet``), e.g. SPON's
            ``context=`` for another mesh or ``lifting=``.
        """
        u = self.decode_output(self.network(self.encode_inputs(x), **self._network_kwargs(x, kwargs)))
        if self.normalizes and isinstance(self.network, ExactDirichlet):
            u = self.network.impose_dirichlet(u, x, **kwargs)
        return u
