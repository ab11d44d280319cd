"""The run configuration schema: every key documented, errors naming the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from fe_operators.cli.train import main_train
from fe_operators.train import (
    MODEL_TYPES, ConfigError, RunConfig, config_from_dict, config_to_dict, default_config_yaml, load_config,
)
from fe_operators.train.model_types import DataclassSchema, ModelType

MINIMAL = {"data": {"path": "d.h5"}, "out": {"dir": "runs/a"}}


def with_(**sections) -> dict:
    cfg = {k: dict(v) for k, v in MINIMAL.items()}
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def test_minimal_config_gets_defaults_and_paths_relative_to_the_file(tmp_path):
    (tmp_path / "run.yaml").write_text("data: {path: d.h5}\nout: {dir: runs/a}\ntrain:\n  lr: 1e-3\n"
                                       "  scheduler: {name: step, gamma: 0.1}\nmodel: {type: spon, width: 32}\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)  # YAML 1.2: 1e-3 is a float
    assert cfg.data.path == str(tmp_path / "d.h5") and cfg.out.dir == str(tmp_path / "runs" / "a")
    assert cfg.train.scheduler.name == "step" and cfg.train.scheduler.gamma == 0.1
    assert cfg.train.epochs == 100 and cfg.data.split == [0.8, 0.1, 0.1]
    # the spon schema fills in SPON's and the processor's defaults
    assert cfg.model.type == "spon" and cfg.model.options["width"] == 32
    assert cfg.model.options["processor"] == "gnn" and cfg.model.options["depth"] == 2
    assert config_to_dict(cfg)["model"]["type"] == "spon" and "hidden" not in cfg.model.options


@pytest.mark.parametrize("change, message", [
    ({"train": {"lr": "abc"}}, "train.lr: expected float, got str 'abc'"),
    ({"train": {"lrr": 0.1}}, "train.lrr: unknown key; did you mean 'lr'?"),
    ({"extra": {}}, "extra: unknown key"),
    ({"train": {"epochs": 2.5}}, "train.epochs: expected int, got float 2.5"),
    ({"train": {"epochs": True}}, "train.epochs: expected int, got bool True"),
    ({"train": {"epochs": 0}}, "train.epochs: expected a positive number, got 0"),
    ({"train": {"scheduler": {"name": "cos"}}},
     "train.scheduler.name: expected one of 'cosine', 'step', 'none', got str 'cos'"),
    ({"train": {"scheduler": 3}}, "train.scheduler: expected a mapping, got int 3"),
    ({"train": {"metrics": ["rel_l2", "l1"]}}, r"train.metrics\[1\]: expected one of 'rel_l2', 'rel_h1'"),
    ({"train": {"threads": "4"}}, "train.threads: expected int or null, got str '4'"),
    ({"train": {"device": "gpu"}}, "train.device: expected a torch device"),
    ({"train": {"time_budget": -1}}, "train.time_budget: expected a finite positive number, got -1.0"),
    ({"train": {"scheduler": {"length": "time"}}},
     "train.scheduler.length: expected one of 'epochs', 'time_budget', got str 'time'"),
    ({"train": {"scheduler": {"length": "time_budget"}}},
     "train.scheduler.length: 'time_budget' needs a time budget: set train.time_budget"),
    ({"data": {"split": [0.8, 0.3, 0.1]}}, r"data.split: fractions must sum to at most 1"),
    ({"data": {"split": [10, 0, 2]}}, r"data.split: the train and val splits must not be empty"),
    ({"data": {"split": [0.8, "x", 0.1]}}, r"data.split\[1\]: expected int or float, got str 'x'"),
    ({"data": {"path": None}}, "data.path: required key missing"),
    ({"model": {"type": 3}}, "model.type: expected str, got int 3"),
])
def test_bad_values_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(with_(**change))


def test_time_budget_schedule_config():
    cfg = config_from_dict(with_(train={"time_budget": 600, "scheduler": {"length": "time_budget", "min_lr": 1e-5}}))
    assert cfg.train.scheduler.length == "time_budget" and cfg.train.time_budget == 600.0
    assert cfg.train.restore_best is True  # the default: the best validation weights at the end
    assert config_from_dict(with_()).train.scheduler.length == "epochs"


def test_missing_sections_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="out.dir: required key missing"):
        config_from_dict({"data": {"path": "d.h5"}})
    with pytest.raises(ConfigError, match="expected a mapping, got list"):
        config_from_dict([1, 2])
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the configuration file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "typo.yaml").write_text("data: {path: d.h5}\nout: {dir: r}\ntrain: {batchsize: 4}\n")
    match = r"typo\.yaml: train\.batchsize: unknown key; did you mean 'batch_size'"
    with pytest.raises(ConfigError, match=match) as info:
        load_config(tmp_path / "typo.yaml")
    assert info.value.key == "train.batchsize"


def test_registered_model_schema_checks_model_keys(monkeypatch):
    @dataclasses.dataclass
    class Schema:
        processor: typing.Literal["mlp", "gnn"] = dataclasses.field(default="mlp", metadata={"doc": "Processor."})
        width: int = dataclasses.field(default=64, metadata={"doc": "Hidden width."})

    monkeypatch.setitem(MODEL_TYPES, "toy", ModelType("unused:build", DataclassSchema(Schema)))
    cfg = config_from_dict(with_(model={"type": "toy", "width": 8}))
    assert cfg.model.options == {"processor": "mlp", "width": 8}
    with pytest.raises(ConfigError, match="model.width: expected int, got str 'wide'"):
        config_from_dict(with_(model={"type": "toy", "width": "wide"}))
    with pytest.raises(ConfigError, match="model.depthh: unknown key"):
        config_from_dict(with_(model={"type": "toy", "depthh": 3}))
    text = default_config_yaml("toy")
    assert "  type: toy\n" in text and "# [toy] Hidden width.\n  width: 64" in text
    assert "[toy]" not in default_config_yaml()
    data = yaml.safe_load(text)
    data["data"]["path"], data["out"]["dir"] = "d.h5", "r"
    assert config_from_dict(data).model.options == {"processor": "mlp", "width": 64}


def test_every_key_is_documented_and_the_default_dump_loads(tmp_path):
    def fields(cls):
        for f in dataclasses.fields(cls):
            yield cls, f
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                yield from fields(tp)

    for cls, f in fields(RunConfig):
        assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
    text = default_config_yaml()
    data = yaml.safe_load(text)
    data["data"]["path"], data["out"]["dir"] = "d.h5", "runs/a"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    assert load_config(tmp_path / "run.yaml") == config_from_dict(MINIMAL, base_dir=tmp_path)


def test_cli_prints_config_and_reports_bad_configs(tmp_path, capsys):
    assert main_train(["--print-config"]) == 0
    assert "batch_size: 16" in capsys.readouterr().out
    (tmp_path / "run.yaml").write_text("data: {path: d.h5}\nout: {dir: r}\ntrain: {lr: abc}\n")
    assert main_train(["--config", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert "train.lr: expected float, got str 'abc'" in err and "run.yaml" in err
    assert main_train([]) == 2


@pytest.mark.parametrize("options, key", [
    ({"latent_cells": 8, "latent_modes": 5}, "model.latent_modes"),
    ({"latent_cells": 8, "latent_modes": 0}, "model.latent_modes"),
    ({"latent_cells": 1, "latent_modes": 1}, "model.latent_cells"),
    ({"latent_cells": 8, "latent_modes": 2, "depth": 0}, "model.depth"),
    ({"processor": "mlp", "latent_cells": 8}, "model.latent_cells"),
    ({"latent_padding": -1.0}, "model.latent_padding"),
])
def test_spon_latent_grid_keys_are_checked(options, key):
    from fe_operators.train.builders import spon_options
    from fe_operators.train.config import ModelSection

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        spon_options(ModelSection(type="spon", options=options))
    ok = spon_options(ModelSection(type="spon", options={"latent_cells": 8, "latent_modes": 4}))
    assert (ok.processor_options.latent_cells, ok.processor_options.latent_modes) == (8, 4)
