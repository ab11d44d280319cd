"""``fe_operators.configfile``: one reader, path resolver and ``--print-config`` emitter for every schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fe_operators.configfile import commented_yaml, config_from_data, load_config_file
from fe_operators.errors import ConfigError
from fe_operators.options import option, option_rows, positive


@dataclasses.dataclass
class _Inner:
    """A nested section."""

    file: str = option("(required) An input file, relative to the configuration file.")
    count: int = option("How many.", positive, default=3)


@dataclasses.dataclass(kw_only=True)
class _Toy:
    """A toy configuration schema."""

    inner: _Inner = option("The section.")
    out: str = option("(required) Output folder.")
    rate: float = option("A rate.", default=1e-3)


def test_paths_are_relative_to_the_configuration_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "toy.yaml"
    path.write_text("inner: {file: data.h5}\nout: ../runs\nrate: 1e-2\n")
    cfg = load_config_file(_Toy, path, paths=("inner.file", "out"))
    assert cfg.inner.file == str((tmp_path / "sub" / "data.h5").resolve())
    assert cfg.out == str((tmp_path / "runs").resolve())
    assert cfg.rate == 0.01  # YAML 1.2 numbers: 1e-2 is a float


def test_validation_error_names_key_and_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config_from_data(_Toy, {"inner": {"file": "a", "count": 0}, "out": "o"}, source="toy.yaml")
    assert info.value.key == "inner.count" and "toy.yaml" in str(info.value)


def test_commented_yaml_lists_every_key_and_loads_once_filled_in():
    text = commented_yaml(option_rows(_Toy), "toy", values={"rate": 0.5}, notes={"out": "a note"})
    assert text.startswith("# toy configuration: every key with its default.")
    assert "  # How many.\n  count: 3\n" in text and "rate: 0.5\n" in text and "out: null\n# a note\n" in text
    data = yaml.safe_load(text)
    with pytest.raises(ConfigError) as info:  # required keys are null until filled in
        config_from_data(_Toy, data)
    assert info.value.key == "inner.file"
    data["inner"]["file"], data["out"] = "d.h5", "runs"
    cfg = config_from_data(_Toy, data, base_dir="/base", paths=("inner.file",))
    assert cfg.inner.file == str(Path("/base/d.h5").resolve()) and cfg.out == "runs" and cfg.inner.count == 3
