"""One error wrapper for every ``fe-operators`` command: exit statuses and one-line messages."""

from __future__ import annotations

import sys

import pytest

from fe_operators import errors
from fe_operators.cli.main import main
from fe_operators.cli.runner import run_command
from fe_operators.petsc_argv import argv_hidden_from_petsc


def raising(exc):
    def body(*args, **kwargs):
        raise exc

    return body


@pytest.mark.parametrize("exc, status", [
    (errors.ConfigError("train.lr", "expected float, got str 'abc'"), 2),
    (errors.UsageError("--plots expects 0..3"), 2),
    (errors.DatasetFileError("not a dataset"), 1),
    (errors.CheckpointError("best.pt", "refused"), 1),
    (ValueError("a plain value error"), 1),
    (FileNotFoundError(2, "No such file or directory", "x.h5"), 1),
])
def test_errors_map_to_exit_status_and_one_line(exc, status, capsys):
    assert run_command("train", raising(exc), []) == status
    err = capsys.readouterr().err
    assert err == f"fe-operators train: error: {' '.join(str(exc).split())}\n"


def test_multiline_message_is_one_line_and_bugs_keep_their_traceback(capsys):
    assert run_command("evaluate", raising(errors.SpaceMismatchError("a\n  b")), []) == 1
    assert capsys.readouterr().err == "fe-operators evaluate: error: a b\n"
    with pytest.raises(RuntimeError, match="a bug"):
        run_command("evaluate", raising(RuntimeError("a bug")), [])
    with pytest.raises(KeyError):
        run_command("evaluate", raising(KeyError("k")), [])


def test_traceback_on_request(monkeypatch):
    monkeypatch.setenv("FE_OPERATORS_TRACEBACK", "1")
    with pytest.raises(ValueError, match="shown"):
        run_command("train", raising(ValueError("shown")), [])


def test_argv_hidden_while_the_command_runs(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fe-operators", "train", "--config", "x.yaml"])
    seen = []
    assert run_command("train", lambda argv: seen.append((list(sys.argv), argv)) or 0, ["--config", "x.yaml"]) == 0
    assert seen == [(["fe-operators"], ["--config", "x.yaml"])]
    assert sys.argv == ["fe-operators", "train", "--config", "x.yaml"]
    with pytest.raises(ZeroDivisionError):
        with argv_hidden_from_petsc() as hidden:
            assert hidden == ["train", "--config", "x.yaml"] and sys.argv == ["fe-operators"]
            1 / 0
    assert sys.argv == ["fe-operators", "train", "--config", "x.yaml"]


def test_train_reports_plain_value_errors_without_traceback(monkeypatch, capsys):
    from fe_operators.cli import train as train_cli

    monkeypatch.setattr(train_cli, "load_config", lambda path: path)
    monkeypatch.setattr(train_cli, "run_training", raising(ValueError("bad value")))
    assert main(["train", "--config", "run.yaml"]) == 1
    assert capsys.readouterr().err == "fe-operators train: error: bad value\n"
    assert main(["train"]) == 2
    assert capsys.readouterr().err.endswith("fe-operators train: error: --config FILE is required\n")


def test_usage_errors_and_help(capsys):
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
    assert main(["evaluate", "--help"]) == 0
    assert "--data FILE" in capsys.readouterr().out
    assert main(["evaluate", "run"]) == 2  # argparse: --data is required
    assert "the following arguments are required: --data" in capsys.readouterr().err
