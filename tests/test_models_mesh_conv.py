"""MeshConv applies φ's last linear layer after the mean: same as applying it per edge."""

import torch

from fe_operators.models.layers.graph_ops import mean_aggregate
from fe_operators.models.layers.mesh_conv import MeshConv


def test_linear_after_mean_equals_per_edge():
    torch.manual_seed(0)
    conv = MeshConv(8, 3).double()
    n, E = 30, 120
    edge_index = torch.randint(0, 25, (2, E))  # nodes 25..29 receive nothing
    edge_attr = torch.randn(E, 3, dtype=torch.float64)
    degree = torch.bincount(edge_index[1], minlength=n)
    h = torch.randn(n, 2, 8, dtype=torch.float64)
    source, target = edge_index
    per_edge = conv.lin_m(conv.message(conv.lin_i(h)[target], conv.lin_j(h)[source], conv.lin_e(edge_attr)))
    reference = conv.update(h, mean_aggregate(per_edge, target, degree))
    assert torch.allclose(conv(h, edge_index, edge_attr, degree), reference, rtol=0, atol=1e-13)
