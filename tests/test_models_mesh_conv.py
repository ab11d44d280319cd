"""MeshConv applies φ's last linear layer after the mean: same as applying it per edge."""

import pytest
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


@pytest.mark.parametrize("batch, dtype", [(1, torch.float32), (3, torch.float64)])
def test_chunked_edge_mean_is_the_eager_layer_bit_for_bit(monkeypatch, batch, dtype):
    """Without autograd, edges sorted by target: the messages are summed per chunk of nodes
    (several chunks here) and the layer's output is the eager one bit for bit; nodes without
    edges get the bias-free update as before; unsorted edges run the eager path."""
    import fe_operators.models.layers.mesh_conv as mc

    torch.manual_seed(1)
    conv = MeshConv(8, 3, act="gelu").to(dtype)
    n, E = 40, 300
    edge_index = torch.randint(0, 35, (2, E))  # nodes 35..39 receive nothing
    order = torch.argsort(edge_index[1], stable=True)
    edge_index = edge_index[:, order]
    edge_attr = torch.randn(E, 3, dtype=dtype)
    degree = torch.bincount(edge_index[1], minlength=n)
    h = torch.randn(n, batch, 8, dtype=dtype)
    with monkeypatch.context() as m:
        m.setattr(MeshConv, "_chunked", lambda self, h, ei, d: False)
        eager = conv(h, edge_index, edge_attr, degree)
    calls = []
    monkeypatch.setattr(mc, "EDGE_CHUNK_ELEMENTS", 16 * 8 * batch)  # about 16 edges a chunk
    real = mc._segment_sum
    monkeypatch.setattr(mc, "_kernels", lambda: (mc._edge_sum, lambda *a: (calls.append(a[2]), real(*a))))
    with torch.no_grad():
        assert conv._chunked(h, edge_index, degree)
        fast = conv(h, edge_index, edge_attr, degree)
    assert len(calls) > 5 and torch.equal(fast, eager.detach())
    a, b, e = conv.lin_i(h), conv.lin_j(h), conv.lin_e(edge_attr)
    with torch.no_grad():
        direct = mc.edge_mean(a, b, e, edge_index, degree, conv.act)
        ref = mean_aggregate(conv.message(a[edge_index[1]], b[edge_index[0]], e), edge_index[1], degree)
        assert torch.equal(direct, ref) and torch.equal(direct[35:], torch.zeros_like(direct[35:]))
        # numba's parallel kernels (several threads): the same values
        monkeypatch.setattr(mc, "_kernels", lambda: (mc._edge_sum_parallel, mc._segment_sum_parallel))
        assert torch.equal(mc.edge_mean(a, b, e, edge_index, degree, conv.act), ref)
        shuffled = edge_index[:, torch.randperm(E)]
        assert not conv._chunked(h, shuffled, degree)
        assert not conv._chunked(h, edge_index, degree.flip(0))  # counts that do not match the edges


def test_chunked_edge_mean_gradients_equal_the_eager_ones(monkeypatch):
    """With gradients the chunked layer recomputes each chunk's sums in the backward pass:
    gradcheck in float64, and the eager layer's gradients for every parameter and input."""
    import fe_operators.models.layers.mesh_conv as mc

    torch.manual_seed(2)
    n, E, W = 20, 90, 4
    edge_index = torch.randint(0, 17, (2, E))
    edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)]
    degree = torch.bincount(edge_index[1], minlength=n)
    monkeypatch.setattr(mc, "EDGE_CHUNK_ELEMENTS", 10 * 2 * W)
    a = torch.randn(n, 2, W, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, 2, W, dtype=torch.float64, requires_grad=True)
    e = torch.randn(E, W, dtype=torch.float64, requires_grad=True)
    for act in (torch.nn.GELU(), torch.nn.Tanh()):
        assert torch.autograd.gradcheck(lambda a, b, e: mc.edge_mean(a, b, e, edge_index, degree, act), (a, b, e))
    conv = MeshConv(6, 3).double()
    h = torch.randn(n, 3, 6, dtype=torch.float64, requires_grad=True)
    attr = torch.randn(E, 3, dtype=torch.float64)
    g = torch.randn(n, 3, 6, dtype=torch.float64)
    grads = []
    for chunked in (True, False):
        monkeypatch.setattr(MeshConv, "_chunked", lambda self, h, ei, d, c=chunked: c)
        out = conv(h, edge_index, attr, degree)
        grads.append(torch.autograd.grad(out, [h, *conv.parameters()], g))
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(*grads))
