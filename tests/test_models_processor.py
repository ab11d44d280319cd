"""The processor extension point: registry, declared options, config schema, context storage."""

import dataclasses
import json

import pytest
import torch
import yaml

from fe_operators.errors import ConfigError
from fe_operators.models import (
    PROCESSORS, SPON, MeshContext, Processor, register_processor,
)
from fe_operators.multigrid.hierarchy import Hierarchy, Level
from fe_operators.options import option, positive
from fe_operators.sparse import SparseMap
from fe_operators.train import config_from_dict, default_config_yaml
from fe_operators.train.builders import spon_options
from fe_operators.train.config import ModelSection


def _context(n: int = 5, hierarchy: bool = False) -> MeshContext:
    """A 1D chain of ``n`` nodes (no Firedrake needed), both ends Dirichlet."""
    coords = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    src = torch.cat([torch.arange(n - 1), torch.arange(1, n)])
    dst = torch.cat([torch.arange(1, n), torch.arange(n - 1)])
    order = torch.argsort(dst, stable=True)
    edge_index = torch.stack([src[order], dst[order]])
    rel = coords[edge_index[0]] - coords[edge_index[1]]
    edge_attr = torch.cat([rel, rel.abs()], dim=1)
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.bincount(edge_index[1], minlength=n), 0)
    mask = torch.zeros(n, 1, dtype=torch.bool)
    mask[[0, -1]] = True
    eye = SparseMap(torch.arange(n + 1), torch.arange(n), torch.full((n,), 2.0, dtype=torch.float64), n)
    hier = None
    if hierarchy:
        def level(m):
            ops = SparseMap(torch.arange(2 * m + 1), torch.arange(m).repeat(2), torch.ones(2 * m, dtype=torch.float64), m)
            return Level(ops, torch.zeros(m, dtype=torch.bool), torch.tensor([0, 2]),
                         torch.tensor([0.0, 1.0], dtype=torch.float64), torch.ones(m, dtype=torch.float64),
                         coords=torch.linspace(0, 1, m, dtype=torch.float64)[:, None],
                         lumped_mass=torch.ones(m, dtype=torch.float64), h=1.0 / (m - 1))
        m = (n + 1) // 2
        P = SparseMap.from_scipy(__import__("scipy.sparse").sparse.random(n, m, density=0.5, random_state=0))
        hier = Hierarchy((level(m), level(n)), (P,))
    return MeshContext(coords, edge_index, edge_attr, indptr, mask, torch.zeros(n, 1, dtype=torch.float64),
                       torch.arange(1, n - 1), (None, eye), hier)


@dataclasses.dataclass
class ScaleOptions:
    gain: float = option("Output gain.", positive, default=1.0)


class ScaleProcessor(Processor):
    """A toy processor: a learned pointwise map times a gain (any mesh)."""

    name = "toy-scale"
    Options = ScaleOptions
    mesh_agnostic = True

    def __init__(self, in_channels: int, out_ncomp: int, *, gain: float = 1.0) -> None:
        super().__init__()
        self.in_channels, self.out_ncomp, self.gain = in_channels, out_ncomp, gain
        self.linear = torch.nn.Linear(in_channels, out_ncomp)

    @classmethod
    def for_context(cls, context, in_channels, out_ncomp, options):
        return cls(in_channels, out_ncomp, gain=options.gain)

    @property
    def config(self):
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "gain": self.gain}

    def forward(self, h, context):
        y = self.gain * self.linear(h)
        return y.reshape(h.shape[0], -1).index_select(1, context.free)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(PROCESSORS, "toy-scale", ScaleProcessor)  # removed again after the test
    return register_processor(ScaleProcessor)


def test_a_registered_processor_is_one_step_away(toy):
    ctx = _context()
    torch.manual_seed(0)
    model = SPON.from_context(ctx, ["a", "b"], "toy-scale", gain=3.0)
    x = torch.randn(2, ctx.n_nodes, 2, dtype=torch.float64)
    encoded = x * torch.tensor([1.0, 2.0], dtype=torch.float64)  # input "b" comes through the map 2 I
    expected = 3.0 * model.processor.linear(encoded.float()).double().squeeze(-1)
    u = model(x)
    assert torch.allclose(u[:, 1:-1], expected[:, 1:-1], rtol=1e-6, atol=0)
    assert torch.equal(u[:, [0, -1]], torch.zeros(2, 2, dtype=torch.float64))
    clone = SPON.from_config(json.loads(json.dumps(model.config)))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x), u) and model.mesh_agnostic
    # the run configuration accepts it, checks and documents its keys
    opts = spon_options(ModelSection(type="spon", options={"processor": "toy-scale", "gain": 2.0}))
    assert opts.processor_options == ScaleOptions(gain=2.0)
    with pytest.raises(ConfigError, match=r"model\.gain: expected a positive number, got -1.0"):
        spon_options(ModelSection(type="spon", options={"processor": "toy-scale", "gain": -1}))
    assert "# [spon] [processor: toy-scale] Output gain.\n  # gain: 1.0" in default_config_yaml("spon")


def test_processor_options_are_checked_where_they_are_given():
    ctx = _context()
    with pytest.raises(ConfigError, match=r"processor: unknown processor 'cnn'; expected one of \['gnn', 'hierarchical', 'mlp'"):
        SPON.from_context(ctx, ["a", "b"], "cnn")
    with pytest.raises(ConfigError, match=r"widht: unknown key; did you mean 'width'\?"):
        SPON.from_context(ctx, ["a", "b"], "gnn", widht=8)
    with pytest.raises(ConfigError, match=r"model\.hidden:.*mlp processor.*processor: gnn"):
        config_from_dict({"data": {"path": "d"}, "out": {"dir": "o"}, "model": {"hidden": [8]}})
    with pytest.raises(ConfigError, match=r"model\.processor: expected one of \['gnn', 'hierarchical', 'mlp', 'multigrid'\]"):
        config_from_dict({"data": {"path": "d"}, "out": {"dir": "o"}, "model": {"processor": "cnn"}})
    with pytest.raises(TypeError, match="registered processor class"):
        SPON(torch.nn.Linear(2, 1), ["a"])


def test_print_config_documents_every_processor_and_loads():
    text = default_config_yaml("spon")
    for name, cls in PROCESSORS.items():
        for f in dataclasses.fields(cls.Options):
            assert f"[processor: {name}] {f.metadata['doc']}" in text
    data = yaml.safe_load(text)
    data["data"]["path"], data["out"]["dir"] = "d.h5", "r"
    assert config_from_dict(data).model.options["processor"] == "gnn"


def test_context_state_dict_keys_are_attribute_paths_and_round_trip():
    ctx = _context(hierarchy=True)
    model = SPON.from_context(ctx, ["a", "b"], "mlp", hidden=[4])
    state = model.state_dict()
    assert "context_buffers.input_maps.1.crow" in state and "context_buffers.input_maps.0.crow" not in state
    assert int(state["context_buffers.input_maps.length"]) == 2
    assert "context_buffers.hierarchy.levels.1.operators.values" in state
    assert "context_buffers.hierarchy.prolongations.0.n_cols" in state
    clone = SPON.from_config(model.config)
    assert clone.context is None
    clone.load_state_dict(state)
    got = clone.context
    assert got.input_maps[0] is None and torch.equal(got.input_maps[1].values, ctx.input_maps[1].values)
    assert got.hierarchy.n_levels == 2 and got.hierarchy.levels[0].h == ctx.hierarchy.levels[0].h
    assert torch.equal(got.hierarchy.prolongations[0].col, ctx.hierarchy.prolongations[0].col)
    assert got is clone.context  # the same object until the buffers change
    x = torch.randn(2, ctx.n_nodes, 2, dtype=torch.float64)
    assert torch.equal(clone(x), model(x))
    # casting the model keeps the FE data in float64
    clone.float()
    assert clone.context.hierarchy.levels[0].lumped_mass.dtype == torch.float64


def test_node_weights_travel_in_the_state_dict_and_may_be_absent():
    ctx = dataclasses.replace(_context(), node_weights=torch.linspace(1, 2, 5, dtype=torch.float64))
    model = SPON.from_context(ctx, ["a", "b"], "mlp", hidden=[4])
    state = model.state_dict()
    clone = SPON.from_config(model.config)
    clone.load_state_dict(state)
    assert torch.equal(clone.context.node_weights, ctx.node_weights)
    del state["context_buffers.node_weights"]  # a checkpoint from before they existed
    clone.load_state_dict(state)
    assert clone.context.node_weights is None
    with pytest.raises(ValueError, match="node_weights: expected shape"):
        dataclasses.replace(ctx, node_weights=torch.ones(3, dtype=torch.float64))


def test_sparse_map_transpose():
    import scipy.sparse as sp

    A = sp.random(7, 5, density=0.4, random_state=1, format="csr")
    T = SparseMap.from_scipy(A).transpose()
    assert T.shape == (5, 7) and abs(T.to_scipy() - A.T).max() == 0
