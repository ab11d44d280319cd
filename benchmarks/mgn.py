"""The pinned MeshGraphNets baseline of ``make bench-dynamics`` (issue 16): cylinder flow.

MeshGraphNets (Pfaff, Fortunato, Sanchez-Gonzalez, Battaglia, "Learning mesh-based
simulation with graph networks", ICLR 2021), its cylinder-flow (CFD) setting, as
published:

* **encode-process-decode** on the mesh graph: node and edge encoders, 15 message-passing
  blocks with residual connections on node and edge latents, a node decoder;
* every MLP has **two hidden layers of 128** with ReLU and output 128 followed by a
  **LayerNorm**, except the decoder's (no LayerNorm; output the predicted quantities);
* a block updates each edge from ``[e_ij, v_i, v_j]`` and each node from
  ``[v_i, Σ_j e'_ij]`` (sum over incoming edges, ``index_add_``), both with residuals;
* node features: the velocity and a one-hot **node type** (interior, Dirichlet wall,
  inflow, outflow), here with the Reynolds number broadcast to every node (the paper's
  inflow speed varies per trajectory and is seen through the inflow nodes' velocity;
  ours is also seen there, the broadcast parameter makes it explicit); edge features the
  relative position of the two nodes in mesh space and its norm;
* outputs the **normalised velocity increment** ``u_{n+1} - u_n`` and the **pressure**
  ``p_{n+1}``, each normalised by an **online normaliser** (running mean and standard
  deviation of the training targets, as are the node and edge features);
* **training noise**: Gaussian noise of std :attr:`MGNConfig.noise_std` (the paper's
  2e-2 for cylinder flow, in velocity units; our mean inflow speeds 0.8-2 are of the
  paper's order 1) is added to the input velocity of the non-Dirichlet nodes, and the
  target increment is taken from the noisy input, so the network learns to undo
  its own drift; the loss is the MSE of the normalised outputs (velocity on the
  non-Dirichlet nodes, pressure on every node);
* the **Dirichlet nodes** (inflow and walls, including the cylinder) are set to the exact
  data after every step, as the paper does for its boundary node types.

Pure torch (aggregation by ``index_add_``), float32, any ``device``.

Taylor–Hood states
------------------
A state of :class:`~fe_operators.problems.navier_stokes.NavierStokesCylinder` is
``(u, p)`` on ``CG2² × CG1``.  The graph is the **P2 node graph** (the velocity's nodes;
two nodes are adjacent when they share a cell: :func:`fe_operators.fem.graph.dof_graph`),
which carries the velocity exactly.  The P1 pressure is a function in P2 too (its values
at the P2 nodes are its values at the vertices and, at edge midpoints, the mean of the two
end vertices), so the pressure target is that exact interpolation on every node, and the
pressure of a predicted state is read back at the vertex nodes.  (Option: the vertex
graph, ``cylinder_mesh_graph(problem, "p1")``, with P2 midpoint velocities interpolated
linearly from the vertices: the paper's meshes carry their fields at the vertices, and
the vertex graph has about 7 times fewer edges, so training and rollouts cost 7 times
less, at the price of the interpolation error of the midpoints as an error floor.)  Pressure is an output
only, as in the paper: the dynamics of incompressible flow is driven by the velocity and
the pressure is its Lagrange multiplier, so feeding it back would only add a channel to
drift.

Shapes: ``B`` batch, ``n`` P2 nodes, ``E`` directed edges, ``L`` latent size.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["MGNConfig", "MLP", "OnlineNormalizer", "GraphNetBlock", "EncodeProcessDecode", "MeshGraph",
           "NODE_TYPES", "cylinder_mesh_graph", "MGNSimulator", "train_mgn", "rollout_mgn"]

#: node types of the one-hot feature, in this order
NODE_TYPES = ("interior", "wall", "inflow", "outflow")


@dataclasses.dataclass(frozen=True)
class MGNConfig:
    """The pinned design (defaults: the paper's cylinder flow) and its training settings.

    Attributes
    ----------
    latent
        Latent size of nodes and edges and the width of every hidden layer (128).
    message_passing_steps
        Processor blocks (15).
    hidden_layers
        Hidden layers of every MLP (2).
    noise_std
        Std of the training noise on the input velocity (2e-2), in velocity units.
    lr, lr_final
        Adam learning rate, decayed exponentially to ``lr_final`` over the time budget
        (the paper's 1e-4 to 1e-6 over its step count).
    batch
        Pairs of states per step (the paper trains on one trajectory step at a time; 2 here).
    warmup_batches
        Loss-only batches before the first update, which fill the online normalisers.
    max_accumulations
        The normalisers stop accumulating after this many calls (the paper's 1e6).
    """

    latent: int = 128
    message_passing_steps: int = 15
    hidden_layers: int = 2
    noise_std: float = 2e-2
    lr: float = 1e-4
    lr_final: float = 1e-6
    batch: int = 2
    warmup_batches: int = 20
    max_accumulations: int = 10**6


class MLP(nn.Sequential):
    """``hidden_layers`` ReLU layers of ``width``, a linear output, an optional LayerNorm."""

    def __init__(self, n_in: int, n_out: int, width: int = 128, hidden_layers: int = 2,
                 layer_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for k in range(hidden_layers):
            layers += [nn.Linear(n_in if k == 0 else width, width), nn.ReLU()]
        layers.append(nn.Linear(width if hidden_layers else n_in, n_out))
        if layer_norm:
            layers.append(nn.LayerNorm(n_out))
        super().__init__(*layers)


class OnlineNormalizer(nn.Module):
    """Running mean and std of the last dimension, accumulated in training mode.

    ``forward(x)`` returns ``(x - mean) / std``; in training mode (and while fewer than
    ``max_accumulations`` calls have accumulated) it first adds the rows of ``x`` (all
    leading dimensions; ``mask`` selects rows of dimension ``-2``) to the running sums.
    Sums are float64 so that long runs do not lose precision.
    """

    def __init__(self, size: int, max_accumulations: int = 10**6, std_epsilon: float = 1e-8) -> None:
        super().__init__()
        self.max_accumulations = int(max_accumulations)
        self.std_epsilon = float(std_epsilon)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.register_buffer("sum", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("sum_sq", torch.zeros(size, dtype=torch.float64))

    def accumulate(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        rows = x.detach() if mask is None else x.detach()[..., mask, :]
        rows = rows.reshape(-1, x.shape[-1]).double()
        self.count += rows.shape[0]
        self.sum += rows.sum(0)
        self.sum_sq += (rows * rows).sum(0)
        self.calls += 1

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count.clamp_min(1.0)

    @property
    def std(self) -> torch.Tensor:
        var = self.sum_sq / self.count.clamp_min(1.0) - self.mean ** 2
        return var.clamp_min(0.0).sqrt().clamp_min(self.std_epsilon)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and int(self.calls) < self.max_accumulations:
            self.accumulate(x, mask)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)


class GraphNetBlock(nn.Module):
    """One message-passing block: edge update, sum at the receivers, node update; residuals."""

    def __init__(self, latent: int = 128, hidden_layers: int = 2) -> None:
        super().__init__()
        self.edge_mlp = MLP(3 * latent, latent, latent, hidden_layers)
        self.node_mlp = MLP(2 * latent, latent, latent, hidden_layers)

    def forward(self, v: torch.Tensor, e: torch.Tensor, senders: torch.Tensor,
                receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` ``(B, n, L)``, ``e`` ``(B, E, L)``; edge ``k`` goes ``senders[k] -> receivers[k]``."""
        # The edge MLP's first layer on [e, v_s, v_r] is W_e e + (W_s v)_s + (W_r v)_r: the
        # node terms are computed on the n nodes and gathered, not on the E >> n edges
        # (the same function as the concatenation, about 3x cheaper).
        first = self.edge_mlp[0]
        L = e.shape[-1]
        w = first.weight
        node_terms = v @ torch.cat([w[:, L:2 * L], w[:, 2 * L:]]).T  # (B, n, 2L): sender, receiver parts
        h = torch.addmm(first.bias, e.reshape(-1, L), w[:, :L].T).reshape(*e.shape[:-1], -1)
        h = h + node_terms[:, senders, :L] + node_terms[:, receivers, L:]
        for layer in list(self.edge_mlp)[1:]:
            h = layer(h)
        e_new = h
        agg = torch.zeros_like(v).index_add_(1, receivers, e_new)
        v_new = self.node_mlp(torch.cat([v, agg], dim=-1))
        return v + v_new, e + e_new


class EncodeProcessDecode(nn.Module):
    """MeshGraphNets' network: node/edge encoders, ``steps`` :class:`GraphNetBlock`, a node decoder."""

    def __init__(self, node_in: int, edge_in: int, n_out: int, latent: int = 128, steps: int = 15,
                 hidden_layers: int = 2) -> None:
        super().__init__()
        self.node_encoder = MLP(node_in, latent, latent, hidden_layers)
        self.edge_encoder = MLP(edge_in, latent, latent, hidden_layers)
        self.blocks = nn.ModuleList(GraphNetBlock(latent, hidden_layers) for _ in range(steps))
        self.decoder = MLP(latent, n_out, latent, hidden_layers, layer_norm=False)

    def forward(self, x: torch.Tensor, edge_attr: torch.Tensor, senders: torch.Tensor,
                receivers: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, n, node_in)``, ``edge_attr`` ``(E, edge_in)`` or ``(B, E, edge_in)`` → ``(B, n, n_out)``."""
        v = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        if e.dim() == 2:
            e = e.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            v, e = block(v, e, senders, receivers)
        return self.decoder(v)


@dataclasses.dataclass(frozen=True)
class MeshGraph:
    """The P2 node graph of a Taylor–Hood state, with what MGN needs to read and write states.

    Attributes
    ----------
    senders, receivers
        ``(E,)`` int64: edge ``k`` is ``senders[k] -> receivers[k]`` (both directions present).
    edge_attr
        ``(E, 3)`` float64: ``x_s - x_r`` and its length.
    node_type
        ``(n,)`` int64 index into :data:`NODE_TYPES`.
    dirichlet
        ``(n,)`` bool: nodes whose velocity is Dirichlet data (inflow and walls).
    p_vertex
        ``(n_p,)`` int64: the P2 node of each P1 pressure DOF (a vertex).
    p_ends
        ``(n, 2)`` int64: the two P1 DOFs whose mean is the P1 pressure at each graph node
        (the same DOF twice at a vertex).
    coords
        ``(n, 2)`` float64 node coordinates.
    dirichlet_dofs
        Indices, in a state array, of the velocity DOFs on Dirichlet nodes (all P2 ones).
    velocity_nodes
        ``(n,)`` the P2 node of each graph node, for a vertex graph (``None``: the graph
        nodes are the P2 nodes).
    velocity_ends
        ``(n_P2, 2)`` the two graph nodes whose mean is the velocity at each P2 node, for a
        vertex graph (P2 velocity from the vertex values by linear interpolation).
    """

    senders: torch.Tensor
    receivers: torch.Tensor
    edge_attr: torch.Tensor
    node_type: torch.Tensor
    dirichlet: torch.Tensor
    p_vertex: torch.Tensor
    p_ends: torch.Tensor
    coords: np.ndarray
    dirichlet_dofs: torch.Tensor
    velocity_nodes: torch.Tensor | None = None
    velocity_ends: torch.Tensor | None = None

    @property
    def n_nodes(self) -> int:
        return int(self.node_type.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.senders.shape[0])

    @property
    def n_pressure(self) -> int:
        return int(self.p_vertex.shape[0])

    @property
    def n_velocity_nodes(self) -> int:
        """P2 nodes of the velocity."""
        return self.n_nodes if self.velocity_ends is None else int(self.velocity_ends.shape[0])

    @property
    def n_dofs(self) -> int:
        """Length of a state array: two velocity components per P2 node, then the pressure."""
        return 2 * self.n_velocity_nodes + self.n_pressure

    def to(self, device: torch.device | str) -> "MeshGraph":
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)

    # ---------------------------------------------------------------- state arrays
    def split(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., n_dofs)`` states → velocity at the graph nodes ``(..., n, 2)`` and P1 pressure ``(..., n_p)``."""
        m = self.n_velocity_nodes
        u = states[..., :2 * m].reshape(*states.shape[:-1], m, 2)
        if self.velocity_nodes is not None:
            u = u[..., self.velocity_nodes, :]
        return u, states[..., 2 * m:]

    def join(self, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """A state array from the velocity at the graph nodes and the P1 pressure (inverse of :meth:`split`
        on a P2 graph; on a vertex graph the P2 midpoints are interpolated)."""
        if self.velocity_ends is not None:
            u = 0.5 * (u[..., self.velocity_ends[:, 0], :] + u[..., self.velocity_ends[:, 1], :])
        return torch.cat([u.reshape(*u.shape[:-2], 2 * self.n_velocity_nodes), p], dim=-1)

    def pressure_at_nodes(self, p: torch.Tensor) -> torch.Tensor:
        """The P1 pressure ``(..., n_p)`` at the P2 nodes ``(..., n)`` (exact: P1 ⊂ P2)."""
        return 0.5 * (p[..., self.p_ends[:, 0]] + p[..., self.p_ends[:, 1]])


def _coordinates(Q: Any) -> np.ndarray:
    """Coordinates of the nodes of a scalar Lagrange space ``Q``."""
    from fe_operators.fem.graph import dof_coordinates

    return np.asarray(dof_coordinates(Q))


def cylinder_mesh_graph(problem: Any, nodes: str = "p2") -> MeshGraph:
    """The :class:`MeshGraph` of a :class:`~fe_operators.problems.navier_stokes.NavierStokesCylinder`.

    ``nodes="p2"`` (default): the graph of the P2 nodes, which carry the velocity exactly.
    ``nodes="p1"``: the graph of the mesh vertices (the paper's own meshes carry their
    fields at the vertices), about 7 times fewer edges; the velocity of a state is read at
    the vertices and the P2 midpoints of a predicted state are interpolated linearly
    (Dirichlet DOFs then reset to the exact data), so the interpolation error of the
    midpoints is a floor of its error.

    Node types from the problem's markers: inflow on ``inlet_marker``, wall on its
    no-slip markers (walls and cylinder; a corner shared with the inlet is a wall node,
    its value is 0 in both), outflow on the rest of the boundary, interior elsewhere.

    Raises
    ------
    UnsupportedSpaceError
        The velocity space is not vector CG2 and the pressure CG1 on an affine triangle
        mesh (the P2 nodes must be the vertices and edge midpoints).
    """
    import firedrake as fd

    from fe_operators.errors import UnsupportedSpaceError
    from fe_operators.fem.graph import dof_graph

    V, Q = problem.velocity_space, problem.state_space.sub(1)
    cell = V.mesh().ufl_cell().cellname
    if V.ufl_element().embedded_superdegree != 2 or cell != "triangle" or Q.ufl_element().embedded_superdegree != 1:
        raise UnsupportedSpaceError(f"cylinder_mesh_graph needs CG2 x CG1 on triangles, got {V.ufl_element()} x "
                                    f"{Q.ufl_element()} on {cell}s")
    if nodes not in ("p1", "p2"):
        raise ValueError(f"expected nodes 'p1' or 'p2', got {nodes!r}")
    g = dof_graph(V)
    n = g.num_nodes
    node_type = np.zeros(n, dtype=np.int64)
    boundary = fd.DirichletBC(V, 0.0, "on_boundary").nodes
    node_type[boundary] = NODE_TYPES.index("outflow")
    node_type[fd.DirichletBC(V, 0.0, problem.inlet_marker).nodes] = NODE_TYPES.index("inflow")
    node_type[fd.DirichletBC(V, 0.0, problem.noslip_markers).nodes] = NODE_TYPES.index("wall")
    dirichlet = np.isin(node_type, [NODE_TYPES.index("wall"), NODE_TYPES.index("inflow")])

    # match P1 and P2 nodes cell by cell through their coordinates (no assumption on the
    # local node order): a P2 node is a P1 vertex, or the midpoint of two of its cell's vertices
    cv, cq = V.cell_node_list, Q.cell_node_list  # (cells, 6), (cells, 3)
    x2 = np.asarray(g.coords)[cv]                  # (cells, 6, 2)
    x1 = _coordinates(Q)[cq]                       # (cells, 3, 2)
    tol = 1e-8 * float(np.ptp(np.asarray(g.coords), axis=0).max())
    n_p = Q.dof_dset.size
    p_vertex = np.full(n_p, -1, dtype=np.int64)
    ends = np.full((n, 2), -1, dtype=np.int64)
    hit = np.linalg.norm(x2[:, :, None] - x1[:, None], axis=-1) < tol        # (cells, 6, 3)
    c, i, j = np.nonzero(hit)
    p_vertex[cq[c, j]] = cv[c, i]
    ends[cv[c, i]] = cq[c, j][:, None]
    pairs = np.array([(1, 2), (0, 2), (0, 1)])
    mid = 0.5 * (x1[:, pairs[:, 0]] + x1[:, pairs[:, 1]])                    # (cells, 3, 2)
    hit = np.linalg.norm(x2[:, :, None] - mid[:, None], axis=-1) < tol       # (cells, 6, 3)
    c, i, k = np.nonzero(hit)
    ends[cv[c, i], 0], ends[cv[c, i], 1] = cq[c, pairs[k, 0]], cq[c, pairs[k, 1]]
    if (p_vertex < 0).any() or (ends < 0).any():
        raise UnsupportedSpaceError("cylinder_mesh_graph: the P2 nodes are not the P1 vertices and edge "
                                    "midpoints (a curved or non-affine mesh?)")
    d = np.flatnonzero(dirichlet)
    dirichlet_dofs = torch.from_numpy(np.stack([2 * d, 2 * d + 1], -1).reshape(-1))
    if nodes == "p2":
        return MeshGraph(
            senders=g.edge_index[0].clone(), receivers=g.edge_index[1].clone(), edge_attr=g.edge_attr.clone(),
            node_type=torch.from_numpy(node_type), dirichlet=torch.from_numpy(dirichlet),
            p_vertex=torch.from_numpy(p_vertex), p_ends=torch.from_numpy(ends), coords=np.asarray(g.coords).copy(),
            dirichlet_dofs=dirichlet_dofs)
    gq = dof_graph(Q)  # graph node k is P1 DOF k, the vertex P2 node p_vertex[k]
    identity = np.arange(n_p)
    return MeshGraph(
        senders=gq.edge_index[0].clone(), receivers=gq.edge_index[1].clone(), edge_attr=gq.edge_attr.clone(),
        node_type=torch.from_numpy(node_type[p_vertex]), dirichlet=torch.from_numpy(dirichlet[p_vertex]),
        p_vertex=torch.from_numpy(identity), p_ends=torch.from_numpy(np.stack([identity, identity], -1)),
        coords=np.asarray(gq.coords).copy(), dirichlet_dofs=dirichlet_dofs,
        velocity_nodes=torch.from_numpy(p_vertex), velocity_ends=torch.from_numpy(ends))


class MGNSimulator(nn.Module):
    """MeshGraphNets for Taylor–Hood flow states on a fixed :class:`MeshGraph`.

    Parameters
    ----------
    graph
        The mesh graph (:func:`cylinder_mesh_graph`).
    n_params
        Number of scalar trajectory parameters broadcast to the nodes (``Re``: 1).
    config
        The design (:class:`MGNConfig`; default the paper's).
    device
        Where the network, the graph and the normalisers live.

    Notes
    -----
    :meth:`step` maps states ``(B, n_dofs)`` to states ``(B, n_dofs)``; every input and
    output state is float32 on ``device``.  The velocity of the Dirichlet nodes of the
    output is copied from ``dirichlet_values`` (default: the input state's, which for
    time-independent boundary data is the exact data).
    """

    n_out = 3  # du_x, du_y, p

    def __init__(self, graph: MeshGraph, n_params: int, config: MGNConfig | None = None,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.config = config or MGNConfig()
        self.graph = graph.to(device)
        self.n_params = int(n_params)
        c = self.config
        node_in = 2 + len(NODE_TYPES) + self.n_params
        self.node_norm = OnlineNormalizer(node_in, c.max_accumulations)
        self.edge_norm = OnlineNormalizer(3, c.max_accumulations)
        self.out_norm = OnlineNormalizer(self.n_out, c.max_accumulations)
        self.net = EncodeProcessDecode(node_in, 3, self.n_out, c.latent, c.message_passing_steps, c.hidden_layers)
        self.register_buffer("_one_hot", nn.functional.one_hot(self.graph.node_type, len(NODE_TYPES)).float())
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self._one_hot.device

    def _apply(self, fn: Any, recurse: bool = True) -> "MGNSimulator":
        # .to()/.cuda()/.cpu() move parameters and buffers; the graph follows the buffers
        super()._apply(fn, recurse)
        self.graph = self.graph.to(self._one_hot.device)
        return self

    def features(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Node features ``(B, n, 2 + 4 + n_params)``: velocity, node type, parameters."""
        B, n = u.shape[0], self.graph.n_nodes
        return torch.cat([u, self._one_hot.expand(B, -1, -1), params[:, None, :].expand(B, n, -1)], dim=-1)

    def forward(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Normalised outputs ``(B, n, 3)`` (velocity increment, pressure) for velocity ``(B, n, 2)``."""
        g = self.graph
        x = self.node_norm(self.features(u, params))
        edges = self.edge_norm(g.edge_attr.to(u.dtype))
        return self.net(x, edges, g.senders, g.receivers)

    def loss(self, states: torch.Tensor, targets: torch.Tensor, params: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss of state pairs ``(B, n_dofs)`` → ``(B, n_dofs)`` with input noise."""
        g = self.graph
        u, _ = g.split(states)
        u_next, p_next = g.split(targets)
        if self.config.noise_std > 0:
            noise = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
            u = u + self.config.noise_std * noise * (~g.dirichlet)[:, None].to(u.dtype)
        target = torch.cat([u_next - u, g.pressure_at_nodes(p_next)[..., None]], dim=-1)
        target = self.out_norm(target)
        pred = self(u, params)
        err = (pred - target) ** 2
        free = (~g.dirichlet).to(u.dtype)
        vel = (err[..., :2].sum(-1) * free).sum() / (free.sum() * u.shape[0])
        return vel + err[..., 2].mean()

    def step(self, states: torch.Tensor, params: torch.Tensor,
             dirichlet_values: torch.Tensor | None = None) -> torch.Tensor:
        """One time step of states ``(B, n_dofs)``; Dirichlet velocities exact.

        ``dirichlet_values`` ``(B, len(graph.dirichlet_dofs))``: the data at
        ``graph.dirichlet_dofs`` (default the input states' values there).
        """
        g = self.graph
        u, _ = g.split(states)
        out = self.out_norm.inverse(self(u, params))
        u_new = torch.where(g.dirichlet[:, None], u, u + out[..., :2])
        new = g.join(u_new, out[..., 2][:, g.p_vertex])
        bc = states[:, g.dirichlet_dofs] if dirichlet_values is None else dirichlet_values
        return new.index_copy(1, g.dirichlet_dofs, bc)


def _pairs(states: torch.Tensor, horizon: int) -> torch.Tensor:
    """``(pairs, 2)`` (trajectory, step) indices of the pairs ``s_j -> s_{j+1}``, ``j < horizon``."""
    n_traj = states.shape[0]
    steps = min(horizon, states.shape[1] - 1)
    tj = torch.stack(torch.meshgrid(torch.arange(n_traj), torch.arange(steps), indexing="ij"), -1)
    return tj.reshape(-1, 2)


def train_mgn(model: MGNSimulator, states: np.ndarray | torch.Tensor, params: np.ndarray | torch.Tensor, *,
              budget: float, horizon: int | None = None, seed: int = 0, max_steps: int | None = None,
              label: str = "MGN", progress_every: float = 60.0,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``model`` on one-step pairs of trajectories for ``budget`` seconds (or ``max_steps``).

    Adam with the rate decayed exponentially from ``config.lr`` to ``config.lr_final``
    over the budget; ``config.warmup_batches`` loss-only batches first fill the online
    normalisers (not updates, but inside the budget's time; ``max_steps=0`` runs only
    them).

    Parameters
    ----------
    states
        ``(n_traj, n_stored, n_dofs)`` training trajectories.
    params
        ``(n_traj, n_params)``.
    horizon
        Use the pairs ``s_j -> s_{j+1}`` with ``j < horizon`` (default: all).

    Returns
    -------
    dict
        ``steps`` (updates), ``train_s``, ``final_loss`` (mean of the last 20 batch losses),
        ``params`` (trainable parameter count).
    """
    c = model.config
    dev = model.device
    states = torch.as_tensor(states, dtype=torch.float32, device=dev)
    params = torch.as_tensor(params, dtype=torch.float32, device=dev)
    pairs = _pairs(states, horizon if horizon is not None else states.shape[1])
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=dev).manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    decay = math.log(c.lr_final / c.lr)
    t0 = last = time.perf_counter()
    step, batch_no, losses = 0, 0, []
    model.train()
    while True:
        perm = pairs[torch.randperm(pairs.shape[0], generator=gen)]
        for k in range(0, perm.shape[0], c.batch):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1.0 or (max_steps is not None and step >= max_steps and batch_no >= c.warmup_batches):
                train_s = time.perf_counter() - t0
                log(f"  {label}: {step} updates ({step * c.batch / pairs.shape[0]:.2f} epochs of "
                    f"{pairs.shape[0]} pairs) in {train_s:.0f} s; last batch losses "
                    f"{np.mean(losses[-20:]) if losses else math.nan:.4f}")
                model.eval()
                return {"steps": step, "train_s": train_s, "final_loss": float(np.mean(losses[-20:]))
                        if losses else math.nan, "params": sum(p.numel() for p in model.parameters()),
                        "pairs": int(pairs.shape[0])}
            idx = perm[k:k + c.batch]
            s, t, p = states[idx[:, 0], idx[:, 1]], states[idx[:, 0], idx[:, 1] + 1], params[idx[:, 0]]
            if batch_no < c.warmup_batches:
                with torch.no_grad():
                    model.loss(s, t, p, noise_gen)
                batch_no += 1
                continue
            for group in opt.param_groups:
                group["lr"] = c.lr * math.exp(decay * min(frac, 1.0))
            opt.zero_grad(set_to_none=True)
            loss = model.loss(s, t, p, noise_gen)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{label}: the loss is {float(loss)} at update {step}")
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            batch_no += 1
            now = time.perf_counter()
            if now - last >= progress_every:
                last = now
                log(f"  {label}: update {step}, loss {np.mean(losses[-20:]):.4f}, {now - t0:.0f} s")


@torch.no_grad()
def rollout_mgn(model: MGNSimulator, initial: np.ndarray | torch.Tensor, params: np.ndarray | torch.Tensor,
                n_steps: int) -> np.ndarray:
    """Roll ``model`` out from ``initial`` ``(B, n_dofs)`` for ``n_steps`` steps.

    Returns ``(B, n_steps + 1, n_dofs)`` float64 (the initial state first).  The Dirichlet
    velocities of every predicted state are those of ``initial`` (time-independent data).
    """
    model.eval()
    dev = model.device
    s = torch.as_tensor(np.asarray(initial), dtype=torch.float32, device=dev)
    p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=dev)
    bc = s[:, model.graph.dirichlet_dofs]
    out = [s]
    for _ in range(n_steps):
        s = model.step(s, p, bc)
        out.append(s)
    rolled = torch.stack(out, dim=1).double().cpu().numpy()
    # the exact data in float64 (the float32 copy rounds it)
    u0 = np.asarray(initial, dtype=np.float64)
    idx = model.graph.dirichlet_dofs.cpu().numpy()
    rolled[:, :, idx] = u0[:, None, idx]
    return rolled
