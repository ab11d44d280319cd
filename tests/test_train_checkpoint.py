"""Checkpoint files: atomic writes, safe loading, clear errors for bad files."""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models import MODEL_CLASSES, model_class, register_model_class
from fe_operators.train import CheckpointError, check_spaces, load_model, read_checkpoint, save_checkpoint
from fe_operators.train import checkpoint as ckpt_module


def payload(value: float) -> dict:
    """A minimal valid payload (the model class is torch's Linear: not registered, see below)."""
    model = {"class": "torch.nn:Linear", "config": {}, "normalizers": {"input": None, "output": None},
             "state_dict": {"network.w": torch.full((3,), value)}}
    return {"kind": "model", "model": model, "spaces": {}}


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload(1.0))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "fe_operators.checkpoint" and raw["format_version"] == 2
    assert type(raw["torch_version"]) is str
    assert torch.equal(read_checkpoint(path)["model"]["state_dict"]["network.w"], torch.ones(3))


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(1.0))
    before = path.read_bytes()

    def dies_mid_write(obj, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, payload(2.0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    assert torch.equal(read_checkpoint(path)["model"]["state_dict"]["network.w"], torch.ones(3))


def test_payload_must_be_plain_data(tmp_path):
    bad = payload(1.0)
    bad["model"]["config"] = {"activation": torch.nn.ReLU()}
    with pytest.raises(TypeError, match=r"checkpoint\.model\.config\.activation:.*only tensors"):
        save_checkpoint(tmp_path / "c.pt", bad)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("case, reason", [
    ("missing", "no such file"),
    ("folder", "not a regular file"),
    ("truncated", "truncated or corrupt"),
    ("garbage", "truncated or corrupt"),
    ("pickled_code", r"refused by torch\.load\(weights_only=True\).*Unsupported global"),
    ("foreign", "not an fe_operators checkpoint"),
    ("newer", "format version 99 .* reads up to version 2: upgrade fe_operators"),
    ("older", "format version 1 .*pre-release format.*retrain the model"),
    ("incomplete", "missing model.normalizers"),
])
def test_bad_files_raise_checkpoint_errors_naming_file_and_reason(tmp_path, case, reason):
    good = tmp_path / "good.pt"
    save_checkpoint(good, payload(1.0))
    path = tmp_path / "bad.pt"
    if case == "folder":
        path.mkdir()
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "garbage":
        path.write_bytes(os.urandom(256))
    elif case == "pickled_code":
        torch.save({"format": "fe_operators.checkpoint", "obj": torch.nn.ReLU()}, path)
    elif case == "foreign":
        torch.save({"state_dict": {}}, path)
    elif case == "newer":
        data = torch.load(good, weights_only=True)
        torch.save(dict(data, format_version=99), path)
    elif case == "older":  # format 1 kept the normalizers beside the model entry
        data = torch.load(good, weights_only=True)
        normalizers = data["model"].pop("normalizers")
        torch.save(dict(data, format_version=1, normalizers=normalizers), path)
    elif case == "incomplete":
        data = torch.load(good, weights_only=True)
        del data["model"]["normalizers"]
        torch.save(data, path)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_model(path)
    assert info.value.path == str(path) and str(path) in str(info.value)


@pytest.mark.parametrize("ref", ["this:Zen", "lib2to3.__main__:X", "os; import evil:X", "no_such_pkg.models:Net",
                                 "os:getcwd", "torch.nn:Linear"])
def test_only_registered_model_classes_are_loaded_and_nothing_is_imported(tmp_path, ref):
    """A checkpoint naming any module must not import it: only registered classes are looked up."""
    path = tmp_path / "c.pt"
    bad = payload(1.0)
    bad["model"]["class"] = ref
    save_checkpoint(path, bad)
    module = ref.partition(":")[0]
    before = set(sys.modules)
    with pytest.raises(CheckpointError, match=rf"c\.pt: model class {re.escape(repr(ref))} is not a registered "
                                              r"model class \(registered: .*fe_operators.models.spon:SPON.*\); .*"
                                              r"register_model_class"):
        load_model(path)
    assert module not in set(sys.modules) - before


def test_registering_model_classes():
    with pytest.raises(TypeError, match="not a torch.nn.Module subclass"):
        register_model_class(dict)
    with pytest.raises(TypeError, match="needs a JSON-able `config` property and a `from_config` classmethod"):
        register_model_class(torch.nn.Linear)

    class Local(torch.nn.Module):
        config = property(lambda self: {})
        from_config = classmethod(lambda cls, config: cls())

    with pytest.raises(TypeError, match="cannot be re-imported from a checkpoint"):
        register_model_class(Local)
    assert "torch.nn.modules.linear:Linear" not in MODEL_CLASSES
    from fe_operators.models import SPON

    assert model_class("fe_operators.models.spon:SPON") is SPON


def test_space_mismatch_names_every_difference():
    a = {"output": {"family": "Lagrange", "degree": 1, "n_nodes": 25, "value_shape": []},
         "inputs/f": {"family": "Lagrange", "degree": 1, "n_nodes": 25, "value_shape": []}}
    b = {"output": {"family": "Lagrange", "degree": 2, "n_nodes": 81, "value_shape": ()}}
    with pytest.raises(SpaceMismatchError) as info:
        check_spaces(a, b, expected_name="the model", actual_name="the dataset")
    msg = str(info.value)
    assert "inputs/f: in the model, missing in the dataset" in msg
    assert "output: degree 1 (the model) vs 2 (the dataset)" in msg and "output: n_nodes 25" in msg
    check_spaces(a, {k: dict(v, value_shape=()) for k, v in a.items()})  # tuples and lists compare equal


SPARSE_MODEL_SOURCE = '''
import torch

from fe_operators.models import register_model_class


@register_model_class
class SparseOp(torch.nn.Module):
    """y = A x with a mesh operator A as a sparse CSR buffer; from_config knows only its size."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        empty = torch.sparse_csr_tensor(torch.zeros(n + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                        torch.zeros(0), (n, n), check_invariants=True)
        self.register_buffer("A", empty)
        self.scale = torch.nn.Parameter(torch.ones(()))

    @property
    def config(self):
        return {"n": self.n}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def forward(self, x):
        return self.scale * (self.A @ x.T).T
'''


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_load_model_takes_mesh_buffers_from_the_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "fe_train_sparse_op.py").write_text(SPARSE_MODEL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from fe_train_sparse_op import SparseOp

    from fe_operators.train.checkpoint import model_payload

    model = SparseOp(5)
    model.A = (torch.diag(torch.arange(1.0, 6.0)) + torch.diag(torch.ones(4), 1)).to_sparse_csr()
    save_checkpoint(tmp_path / "m.pt", {"kind": "model", "model": model_payload(model), "spaces": {}})
    loaded = load_model(tmp_path / "m.pt")
    x = torch.randn(3, 5)
    assert torch.equal(loaded.predict(x), model(x).detach())


class _Mkdir:
    """Unpickling this would create a folder: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("case, detail", [
    ("torch_save", r"unsupported GLOBAL (posix|os)\.mkdir whose module (posix|os) is blocked"),
    ("zip_member", r"unsupported GLOBAL (posix|os)\.mkdir whose module (posix|os) is blocked"),
    ("protocol_0", r"unsupported GLOBAL os\.mkdir whose module os is blocked"),
    ("raw_pickle", r"a well-formed pickle with opcode FRAME, which torch's restricted unpickler does not accept"),
])
def test_malicious_pickles_are_refused_not_called_corrupt(tmp_path, case, detail):
    import pickle
    import zipfile

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if case == "torch_save":
        torch.save({"format": "fe_operators.checkpoint", "x": _Mkdir(marker)}, path)
    elif case == "zip_member":  # a real checkpoint whose pickle was swapped
        save_checkpoint(path, payload(1.0))
        with zipfile.ZipFile(path) as z:
            blobs = {n: z.read(n) for n in z.namelist()}
        name = next(n for n in blobs if n.endswith("data.pkl"))
        blobs[name] = pickle.dumps({"model": _Mkdir(marker)}, protocol=2)
        with zipfile.ZipFile(path, "w") as z:
            for n, blob in blobs.items():
                z.writestr(n, blob)
    elif case == "protocol_0":
        path.write_bytes(b"cos\nmkdir\n(S'" + str(marker).encode() + b"'\ntR.")
    else:
        path.write_bytes(pickle.dumps(_Mkdir(marker), protocol=4))
    with pytest.raises(CheckpointError, match=rf"refused by torch\.load\(weights_only=True\): .*{detail}.*nothing "
                                              r"in it was run") as info:
        load_model(path)
    assert "corrupt" not in str(info.value) and not marker.exists()


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    import socket
    import subprocess
    import time

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "last.pt"
    stale = tmp_path / f".last.pt.{host}-{dead.pid}.k2j4h5g6.tmp"
    live = tmp_path / f".last.pt.{host}-{os.getpid()}.a1b2c3d4.tmp"  # a write in progress
    remote = tmp_path / f".last.pt.other-host-{dead.pid}.x1y2z3w4.tmp"  # another machine's writer
    old = tmp_path / ".last.pt.q9w8e7r6.tmp"  # an older version's, from yesterday
    recent = tmp_path / ".last.pt.m1n2b3v4.tmp"
    other = tmp_path / f".best.pt.{host}-{dead.pid}.p0o9i8u7.tmp"  # another target
    for p in (stale, live, remote, old, recent, other):
        p.write_bytes(b"half a checkpoint")
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    save_checkpoint(target, payload(1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (target, live, remote, recent, other))
    assert read_checkpoint(target)["kind"] == "model"
