"""Size guards (issue 13, item 4): sizes a user chose are checked against the memory available
before anything is allocated, and messages quote values cut short.

Every test sets ``FE_OPERATORS_MAX_BYTES`` where a refusal must not depend on the
machine, so the tests check the logic and allocate nothing large.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
import torch
import yaml

from fe_operators.cli.main import main
from fe_operators.errors import CheckpointError, ConfigError, MemoryLimitError
from fe_operators.limits import MAX_BYTES_ENV, available_memory, check_allocation, format_bytes
from fe_operators.quoting import short

GiB = 2**30


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML document: ``levels`` levels of 9 aliases, 9**levels strings."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _write(path, text: str):
    path.write_text(text)
    return path


def _refuses_fast(path) -> str:
    """The message of read_yaml_file's refusal of ``path``, asserting it came fast and small."""
    from fe_operators.configfile import read_yaml_file

    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            read_yaml_file(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 5, f"took {seconds:.1f} s"  # about 0.01 s; generous against a loaded machine
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    text = str(info.value)
    assert len(text) < 300 and str(path) in text
    return text


# ----------------------------------------------------------------------------- limits
def test_short_cuts_a_huge_shared_value_without_expanding_it():
    value = ["lol"] * 9
    for _ in range(8):
        value = [value] * 9  # 9**9 strings, shared: its full repr would be gigabytes
    start = time.perf_counter()
    text = short(value)
    assert time.perf_counter() - start < 1 and len(text) <= 80 and text.startswith("[[[")
    assert short("x" * 10**6, 20).endswith("'") and len(short("x" * 10**6, 20)) <= 20
    assert short([1, 2, 3]) == "[1, 2, 3]"


def test_check_allocation_names_key_size_memory_and_fix(monkeypatch):
    monkeypatch.setenv(MAX_BYTES_ENV, "1GiB")
    assert available_memory() == GiB
    check_allocation(GiB, "a thing", "sec.key", fix="lower sec.key")  # fits exactly
    with pytest.raises(ConfigError) as info:
        check_allocation(215 * GiB, "a thing", "sec.key", fix="lower sec.key")
    assert info.value.key == "sec.key"
    msg = str(info.value)
    assert msg.startswith("sec.key: a thing") and "215 GiB" in msg and "1 GiB" in msg and msg.endswith("lower sec.key")
    with pytest.raises(MemoryLimitError, match="a thing would take 2 GiB") as info:
        check_allocation(2 * GiB, "a thing", fix="do less")
    assert isinstance(info.value, MemoryError)
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_BYTES_ENV):
        available_memory()
    monkeypatch.delenv(MAX_BYTES_ENV)
    assert available_memory() > 0  # /proc/meminfo here
    assert format_bytes(512) == "512 B" and format_bytes(3 * 2**20) == "3 MiB"


def test_config_error_cuts_a_huge_key_and_message():
    exc = ConfigError("model." + "k" * 10**6, "expected int, got " + "v" * 10**6 + "; use an int")
    text = str(exc)
    assert len(text) < 1200 and text.startswith("model.kkk") and text.endswith("; use an int")


# ----------------------------------------------------------------------------- YAML
def test_alias_bomb_is_refused_fast_and_small(tmp_path):
    text = _refuses_fast(_write(tmp_path / "bomb.yaml", _bomb()))
    assert "aliases" in text and "lol" not in text


def test_other_oversized_yaml_is_refused_fast(tmp_path):
    from fe_operators.configfile import MAX_CONFIG_BYTES

    assert "larger than 1024 KiB" in _refuses_fast(_write(tmp_path / "big.yaml", "#" * MAX_CONFIG_BYTES + "\n"))
    many = "[" + "a, " * 300_000 + "]\n"  # under 1 MB, 300k values
    assert "more than 10000 values" in _refuses_fast(_write(tmp_path / "many.yaml", many))
    assert "nested more than 50 levels" in _refuses_fast(_write(tmp_path / "deep.yaml", "[" * 60 + "]" * 60))
    deep = "[" * 200_000 + "]" * 200_000 + "\n"  # libyaml's own composer would overflow the C stack
    _refuses_fast(_write(tmp_path / "deeper.yaml", deep))  # by the parser (libyaml >= 0.2.5) or the composer
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    assert "not UTF-8" in _refuses_fast(tmp_path / "bin.yaml")


def test_ordinary_configs_with_anchors_still_load(tmp_path):
    from fe_operators.configfile import read_yaml_file

    text = "sizes: &h [64, 64]\nmodel: {hidden: *h, lr: 1e-3}\nmerged: {<<: {a: 1}, b: 2}\n"
    path = _write(tmp_path / "ok.yaml", text)
    assert read_yaml_file(path) == {"sizes": [64, 64], "model": {"hidden": [64, 64], "lr": 1e-3},
                                    "merged": {"a": 1, "b": 2}}
    assert isinstance(read_yaml_file(path)["model"]["lr"], float)  # YAML 1.2 numbers, as before


def _train_config(tmp_path, model: dict, data: dict | None = None, **sections) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": data or {"path": "data.h5"}, "model": model, "out": {"dir": "run"},
                                    **sections}))
    return str(path)


def test_train_with_an_alias_bomb_under_model_act_fails_in_one_short_line(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(_bomb() + "data: {path: data.h5}\nmodel: {type: spon, processor: mlp, act: *l8}\nout: {dir: run}\n")
    start = time.perf_counter()
    assert main(["train", "--config", str(path)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip()
    assert err.startswith("fe-operators train: error: ") and str(path) in err and "aliases" in err
    assert len(err.splitlines()) == 1 and len(err) < 400 and "lol" not in err


def test_precond_train_with_an_alias_bomb_under_family_coefficient_fails_in_one_short_line(tmp_path, capsys):
    path = tmp_path / "pc.yaml"
    path.write_text(_bomb() + "kind: neural_mg\nfamily: {mesh: 'unitsquare:4/r1', coefficient: *l8}\nout: s.pt\n")
    assert main(["precond", "train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "aliases" in err and str(path) in err and len(err) < 400 and "lol" not in err


def test_messages_quoting_bad_values_cut_them(tmp_path):
    from fe_operators.train.config import load_config

    for model, key in [({"type": "spon", "processor": "mlp", "hidden": [0] * 5000}, "model.hidden"),
                       ({"type": "spon", "processor": "mlp", "act": "x" * 100_000}, "model.act")]:
        with pytest.raises(ConfigError) as info:
            load_config(_train_config(tmp_path, model))
        assert info.value.key == key and len(str(info.value)) < 300 + len(str(tmp_path))


# ----------------------------------------------------------------------------- models
def test_train_with_huge_mlp_layers_is_refused_before_building_naming_model_hidden(tmp_path, capsys, monkeypatch):
    from fe_operators.data import generate_dataset

    generate_dataset("poisson", "unitsquare:3", 6, tmp_path / "p.h5", seed=1, progress=False)
    monkeypatch.setenv(MAX_BYTES_ENV, "1GiB")
    cfg = _train_config(tmp_path, {"type": "spon", "processor": "mlp", "hidden": [100000, 100000]},
                        {"path": str(tmp_path / "p.h5"), "split": [4, 1, 1]}, train={"epochs": 1, "progress": False})
    assert main(["train", "--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.hidden: the mlp processor's" in err and "gradients and Adam's two moments" in err
    assert "1 GiB" in err and "smaller layer sizes" in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- precond
def _precond(**data):
    from fe_operators.precond.config import precond_config_from_dict

    return precond_config_from_dict({"family": {"mesh": "unitsquare:16/r1"}, "out": "pc.pt", **data})


def test_ritz_and_sample_counts_are_checked_against_memory(monkeypatch):
    from fe_operators.precond.config import check_sizes

    monkeypatch.setenv(MAX_BYTES_ENV, "16GiB")
    check_sizes(_precond(kind="dcdm"), 289)  # the defaults fit
    with pytest.raises(ConfigError) as info:
        # the battery's case: "Unable to allocate 215 GiB" (the basis alone)
        check_sizes(_precond(kind="dcdm", dcdm={"ritz": 10**8}), 289)
    assert info.value.key == "dcdm.ritz" and "217 GiB" in str(info.value) and "lower dcdm.ritz" in str(info.value)
    for kind in ("neural_mg", "dcdm"):
        with pytest.raises(ConfigError) as info:
            check_sizes(_precond(kind=kind, family={"mesh": "unitsquare:16/r1", "samples": 10**9}), 289)
        assert info.value.key == "family.samples" and "lower family.samples" in str(info.value)
    with pytest.raises(ConfigError, match="family.validation_samples"):
        check_sizes(_precond(kind="neural_mg", family={"mesh": "unitsquare:16/r1", "validation_samples": 10**9}), 289)


@pytest.mark.parametrize("kind, section, key", [
    ("neural_mg", {"family": {"mesh": "unitsquare:4/r1", "samples": 10**9}}, "family.samples"),
    ("dcdm", {"family": {"mesh": "unitsquare:4/r1"}, "dcdm": {"ritz": 10**8}}, "dcdm.ritz"),
])
def test_precond_train_refuses_before_sampling(tmp_path, capsys, monkeypatch, kind, section, key):
    monkeypatch.setenv(MAX_BYTES_ENV, "1GiB")
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump({"kind": kind, "out": "pc.pt", **section}))
    start = time.perf_counter()
    assert main(["precond", "train", "--config", str(path)]) == 2
    assert time.perf_counter() - start < 60  # the mesh and one space; no operator sampled
    err = capsys.readouterr().err.strip()
    assert f"error: {key}: " in err and "memory available" in err and f"lower {key}" in err
    assert not (tmp_path / "pc.pt").exists()


# ----------------------------------------------------------------------------- generate
def test_generate_refuses_a_sample_count_whose_plan_does_not_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(MAX_BYTES_ENV, "64MiB")
    out = tmp_path / "d.h5"
    assert main(["generate", "poisson", "--mesh", "unitsquare:2", "--samples", "100000000", "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--samples 100000000: the plan" in err and "more than the 64 MiB of memory available" in err
    assert "generate fewer samples per file" in err and not out.exists()


# ----------------------------------------------------------------------------- checkpoints
def _mlp_spon(hidden):
    """A SPON with an MLP processor and no mesh context (from_config): torch only."""
    from fe_operators.models.spon import SPON

    return SPON.from_config({"processor": {"type": "mlp", "n_nodes": 9, "in_channels": 1, "n_free": 1,
                                           "hidden": hidden, "act": "gelu"},
                             "inputs": [{"name": "f", "ncomp": 1}], "output_ncomp": 1, "output_scalar": True,
                             "lifting_inputs": []})


def _tampered(tmp_path, hidden, stored=(8,)):
    from fe_operators.train.checkpoint import model_payload, save_checkpoint

    payload = model_payload(_mlp_spon(list(stored)))
    payload["config"]["processor"]["hidden"] = hidden
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"kind": "model", "model": payload, "spaces": {}})
    return path


@pytest.mark.parametrize("hidden", [[16], [1_000_000, 1_000_000]])
def test_checkpoint_whose_config_does_not_fit_its_weights_is_refused_before_building(tmp_path, monkeypatch, hidden):
    from fe_operators.models.spon import SPON
    from fe_operators.train import checkpoint

    devices = []  # where each build of the network put its weights

    class Spy:
        @staticmethod
        def from_config(config):
            devices.append(torch.empty(0).device.type)
            return SPON.from_config(config)

    path = _tampered(tmp_path, hidden)
    monkeypatch.setattr(checkpoint, "model_class", lambda ref: Spy)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_model(path)
    text = str(info.value)
    assert text.startswith(f"checkpoint {path}: parameter network.processor.mlp.0.weight is stored with shape (8, 9)")
    assert f"makes it ({hidden[0]}, 9)" in text and "damaged or was altered" in text
    assert devices == ["meta"]  # built on the meta device only: nothing allocated


def test_checkpoint_larger_than_memory_is_refused_before_loading(tmp_path, monkeypatch):
    from fe_operators.train.checkpoint import load_model

    path = _tampered(tmp_path, [8])
    load_model(path)  # consistent: loads
    monkeypatch.setenv(MAX_BYTES_ENV, "1KiB")
    with pytest.raises(CheckpointError, match=r"loading it would take .* more than the 1 KiB of memory available"):
        load_model(path)


def test_precond_evaluate_with_a_tampered_model_file_fails_in_one_line(tmp_path, capsys):
    from fe_operators.precond.base import load_precond_model

    path = _tampered(tmp_path, [1_000_000, 1_000_000])
    with pytest.raises(CheckpointError, match="network.processor.mlp"):
        load_precond_model(path)  # the preconditioners' loader is load_model's
