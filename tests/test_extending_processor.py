"""The "add a processor" recipe of docs/extending.md: a toy processor defined and registered here.

The processor below is the recipe's example: an options dataclass, a :class:`Processor`
subclass, :func:`register_processor`.  It then shows in ``fe-operators train
--print-config`` and trains through the real command (``run_training``, the Trainer,
checkpoints) like the processors of the package.

The recipe decorates the class; here :func:`register_processor` is applied in a fixture
instead, so the toy is registered for these tests only (the other test modules see the
package's processors alone).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
import yaml

from fe_operators.cli.main import main
from fe_operators.data import generate_dataset
from fe_operators.models import PROCESSORS, SPON, Processor, register_processor
from fe_operators.models.context import MeshContext
from fe_operators.options import option, positive
from fe_operators.train import load_model


@dataclasses.dataclass
class NodeMLPOptions:
    """Options of the ``toy_node_mlp`` processor (its keys in ``model``)."""

    node_width: int = option("Hidden features of the per-node network.", positive, default=8)
    node_gain: float = option("Factor on the network's output.", positive, default=1.0)


class NodeMLPProcessor(Processor):
    """The same small network at every node: node channels -> output components (any mesh)."""

    name = "toy_node_mlp"
    Options = NodeMLPOptions
    mesh_agnostic = True  # nothing in it depends on the mesh's size

    def __init__(self, in_channels: int, out_ncomp: int, *, node_width: int = 8, node_gain: float = 1.0) -> None:
        super().__init__()
        self.in_channels, self.out_ncomp = int(in_channels), int(out_ncomp)
        self.node_width, self.node_gain = int(node_width), float(node_gain)
        self.net = torch.nn.Sequential(torch.nn.Linear(in_channels, node_width), torch.nn.GELU(),
                                       torch.nn.Linear(node_width, out_ncomp))

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int,
                    options: NodeMLPOptions) -> "NodeMLPProcessor":
        return cls(in_channels, out_ncomp, node_width=options.node_width, node_gain=options.node_gain)

    @property
    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "node_width": self.node_width,
                "node_gain": self.node_gain}

    def forward(self, h: torch.Tensor, context: MeshContext) -> torch.Tensor:
        y = self.node_gain * self.net(h)  # (batch, n, out_ncomp)
        return y.reshape(h.shape[0], -1).index_select(1, context.free)  # the free DOFs, interleaved


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(PROCESSORS, NodeMLPProcessor.name, NodeMLPProcessor)  # removed after the test
    return register_processor(NodeMLPProcessor)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("extending_processor") / "p4.h5"
    generate_dataset("poisson", "unitsquare:4", 12, path, seed=1, progress=False)
    return path


def test_a_registered_processor_shows_in_print_config(toy, capsys):
    assert main(["train", "--print-config"]) == 0
    text = capsys.readouterr().out
    # listed with its keys, documented, commented out (the default processor is gnn)
    assert "# [spon] [processor: toy_node_mlp] Hidden features of the per-node network." in text
    assert "# node_width: 8" in text and "# node_gain: 1.0" in text


def test_a_registered_processor_trains_through_the_train_command(toy, data, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data), "split": [8, 2, 2], "seed": 3},
        "model": {"type": "spon", "processor": "toy_node_mlp", "node_width": 4, "node_gain": 0.5},
        "train": {"epochs": 1, "batch_size": 4, "threads": 1, "progress": False},
        "out": {"dir": str(tmp_path / "run")},
    }))
    assert main(["train", "--config", str(config)]) == 0
    assert "completed: 1 epochs, 2 steps" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["rel_l2"] > 0  # best.pt was evaluated on the test split
    loaded = load_model(tmp_path / "run" / "best.pt")
    assert isinstance(loaded.network, SPON) and isinstance(loaded.network.processor, NodeMLPProcessor)
    assert loaded.network.processor.config["node_width"] == 4 and loaded.network.processor.node_gain == 0.5


def test_its_keys_are_checked_by_name(toy, data, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data)}, "model": {"type": "spon", "processor": "toy_node_mlp", "node_width": -1},
        "out": {"dir": str(tmp_path / "bad")},
    }))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.node_width" in err and "expected a positive number" in err
