"""The torch layers processors are built from (docs/design.md §4).

* :mod:`~fe_operators.models.layers.mlp` — activations by name, a plain :class:`MLP`;
* :mod:`~fe_operators.models.layers.graph_ops` — graph normalisation and aggregation on
  the DOF graph (the GNN's kernels);
* :mod:`~fe_operators.models.layers.mesh_conv` — :class:`MeshConv`, one message-passing
  layer with geometric edge features;
* :mod:`~fe_operators.models.layers.propagation` — :class:`DeepPropagation`, many cheap
  hops with learned per-hop weights;
* :mod:`~fe_operators.models.layers.coarse_grid` — :class:`CoarseGridMixing`, global
  mixing on a fixed coarse grid;
* :mod:`~fe_operators.models.layers.latent_grid` — :class:`LatentGridSpectral`, mesh →
  latent grid → Fourier layer → mesh, and its :class:`GridTransfer`;
* :mod:`~fe_operators.models.layers.operator_conv` — ``channel_spmm``, one sparse matrix per
  channel on a level's operator pattern (the hierarchical processor's convolution).

The learned multi-channel V-cycle of the multigrid processor (and of the DCDM
preconditioner) is :class:`fe_operators.multigrid.cycle.MultigridCycle`.

Nothing here imports Firedrake.
"""

from fe_operators.models.layers.coarse_grid import CoarseGridMixing
from fe_operators.models.layers.latent_grid import GridTransfer, LatentGridSpectral, grid_transfer
from fe_operators.models.layers.mesh_conv import MeshConv
from fe_operators.models.layers.mlp import MLP, activation
from fe_operators.models.layers.propagation import DeepPropagation

__all__ = [
    "MLP", "activation", "MeshConv", "DeepPropagation", "CoarseGridMixing", "LatentGridSpectral",
    "GridTransfer", "grid_transfer",
]
