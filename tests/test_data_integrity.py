"""Integrity of dataset files and journals, and a full disk during ``fe-operators generate``.

* every sample is written with per-field digests and verified when read: bytes changed
  after writing are refused naming the file and the sample (by ``FEFile.read``,
  ``FEDataset``, ``train`` and ``evaluate``);
* journal chunks are verified (digests, finite values) before their samples count and
  before they are merged: a damaged chunk is refused naming the chunk and the sample;
* a write that fails with ``ENOSPC`` (a journal chunk, the final merge; on every rank
  under MPI) ends the run with one line and a journal that the same command resumes.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from fe_operators.cli.main import main
from fe_operators.data import FEDataset, FEFile
from fe_operators.data import journal as journal_module
from fe_operators.cli.generate import main_generate
from fe_operators.data import generate_dataset
from fe_operators.data.h5_writer import DatasetWriter
from fe_operators.data.layout import GROUP
from fe_operators.data.journal import Journal, journal_path
from fe_operators.errors import DatasetFileError, NonFiniteError, OutputError

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "test_data_problems:SmallPoisson"
MESH = "unitsquare:4"
SEED = 3
PARAMS = {"diffusion": "dg0"}
N = 8
ARGV = [PROBLEM, "--mesh", MESH, "--seed", str(SEED), "--diffusion", "dg0", "-q"]
#: what h5py raises when HDF5's write() fails on a full disk (no errno attribute: only the text)
H5PY_ENOSPC = ("Can't write data (file write failed: time = Thu Jan  1 00:00:00 2026, filename = 'merge.h5.tmp', "
               "file descriptor = 7, errno = 28, error message = 'No space left on device', buf = 0x1, "
               "total write size = 4096, bytes this sub-write = 4096, bytes actually written = "
               "18446744073709551615, offset = 0)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of N samples."""
    out = tmp_path_factory.mktemp("integrity") / "ref.h5"
    generate_dataset(PROBLEM, MESH, N, out, seed=SEED, params=PARAMS, progress=False)
    return out


def _assert_reference(path: Path, reference: Path) -> None:
    """``path`` holds exactly the reference's samples, all valid (and verified on reading)."""
    got, ref = FEFile(path), FEFile(reference)
    assert got.n_samples == N and got.complete
    (gi, go), (ri, ro) = got.read(), ref.read()
    for name in ri:
        assert np.array_equal(gi[name], ri[name])
    assert np.allclose(go, ro, rtol=0, atol=1e-12)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# ----------------------------------------------------------------------------- dataset files
def _scribble(path: Path, key: str, sample: int, values: np.ndarray) -> None:
    """Overwrite the first bytes of ``sample``'s row of ``key`` in the file itself, past HDF5 (as a bad disk)."""
    with h5py.File(path, "r") as h5:
        ds = h5[f"{GROUP}/{key}"]
        row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
        info = ds.id.get_chunk_info_by_coord((0,) * ds.ndim)
        assert ds.chunks[0] > sample and info.size == ds.chunks[0] * row_bytes  # one raw chunk
        offset = info.byte_offset + sample * row_bytes
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.asarray(values, dtype="<f8").tobytes())


@pytest.fixture
def damaged(reference, tmp_path) -> Path:
    """A copy of the reference with 40 bytes of finite garbage in sample 5's output."""
    path = tmp_path / "garbage.h5"
    path.write_bytes(reference.read_bytes())
    _scribble(path, "output", 5, np.full(5, 0.25))
    return path


def test_finite_garbage_in_one_sample_is_refused_naming_file_and_sample(damaged):
    f = FEFile(damaged)  # the metadata are intact
    f.read([0, 1, 2, 7])  # so are the other samples
    for indices in (None, [4, 5], [5, 5, 0]):
        with pytest.raises(DatasetFileError) as info:
            f.read(indices)
        text = str(info.value)
        assert f"{damaged}: sample 5 is damaged: its output values do not match the digest" in text
        assert "--overwrite" in text
    with pytest.raises(DatasetFileError, match="sample 5 is damaged"):
        FEDataset(damaged)
    FEDataset(damaged, [0, 1, 2])  # the damaged sample not selected: fine


def test_a_sample_read_one_at_a_time_is_verified(reference, tmp_path):
    path = tmp_path / "later.h5"
    path.write_bytes(reference.read_bytes())
    dataset = FEDataset(path)  # checked when made: intact
    dataset[5]
    dataset.close()
    _scribble(path, "inputs/k", 5, [1.0])  # damaged afterwards
    dataset[4]
    with pytest.raises(DatasetFileError, match=r"later\.h5: sample 5 is damaged: its inputs/k values"):
        dataset[5]


def test_nan_written_into_a_file_names_the_field(reference, tmp_path):
    path = tmp_path / "nan.h5"
    path.write_bytes(reference.read_bytes())
    _scribble(path, "inputs/f", 2, [np.nan, np.nan])
    with pytest.raises(NonFiniteError, match=r"nan\.h5: sample 2 holds 2 NaN or infinite value\(s\) in inputs/f"):
        FEFile(path).read()


def test_files_without_digests_are_refused_with_regenerate(reference, tmp_path):
    old = tmp_path / "v1.h5"
    old.write_bytes(reference.read_bytes())
    with h5py.File(old, "r+") as h5:  # as format version 1 wrote it
        del h5[GROUP]["digests"]
        h5[GROUP].attrs["format_version"] = 1
    with pytest.raises(DatasetFileError, match=r"v1\.h5 has format version 1.*without per-sample digests; "
                                               r"regenerate it .*--overwrite"):
        FEFile(old)
    stripped = tmp_path / "stripped.h5"
    stripped.write_bytes(reference.read_bytes())
    with h5py.File(stripped, "r+") as h5:  # a version-2 file must have them
        del h5[GROUP]["digests"]
    with pytest.raises(DatasetFileError, match=r"stripped\.h5 is damaged or not readable"):
        FEFile(stripped)


def test_extending_a_damaged_file_is_refused_before_solving(reference, tmp_path, capsys):
    out = tmp_path / "grow.h5"
    generate_dataset(PROBLEM, MESH, 4, out, seed=SEED, params=PARAMS, progress=False)
    _scribble(out, "output", 2, np.full(5, 0.25))
    argv = [*ARGV, "--samples", str(N), "--out", str(out)]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert f"{out}: sample 2 is damaged" in line and f"--overwrite to replace {out}" in line
    assert not journal_path(out).exists() or not list(journal_path(out).glob("part-*"))  # nothing solved
    assert main_generate([*argv, "--overwrite"]) == 0  # the fix it names works
    _assert_reference(out, reference)


def test_train_and_evaluate_refuse_a_damaged_sample(tmp_path, capsys):
    data = tmp_path / "d.h5"
    assert main(["generate", "darcy", "--mesh", MESH, "--samples", "8", "--out", str(data), "-q"]) == 0
    cfg = {"data": {"path": str(data), "split": [4, 2, 2], "normalize_output": "none"},
           "model": {"type": "spon", "processor": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 4, "threads": 1, "progress": False},
           "out": {"dir": str(tmp_path / "run")}}
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "good.yaml")]) == 0
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data.read_bytes())
    _scribble(bad, "output", 6, np.full(5, 0.25))
    capsys.readouterr()
    cfg["data"]["path"], cfg["out"]["dir"] = str(bad), str(tmp_path / "bad_run")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "bad.yaml")]) == 1
    line = _one_error_line(capsys)
    assert f"{bad}: sample 6 is damaged" in line and "--overwrite" in line
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(bad), "--split", "all",
                 "--out", str(tmp_path / "e")]) == 1
    line = _one_error_line(capsys)
    assert f"{bad}: sample 6 is damaged" in line and "--overwrite" in line


# ----------------------------------------------------------------------------- journals
def _killed_run(out: Path, reference: Path, chunks=((0, 1, 2), (3, 4, 5))) -> Journal:
    """The journal a run killed after journalling ``chunks`` of the reference's samples leaves."""
    from fe_operators.data.settings import run_settings
    from fe_operators.problems import load_problem

    journal = Journal(out)
    journal.path.mkdir()
    journal.start(run_settings(PROBLEM, MESH, load_problem(PROBLEM, MESH, PARAMS), SEED))
    ref = FEFile(reference)
    for chunk in chunks:
        inputs, output = ref.read(chunk)
        journal.write_part(0, chunk, inputs, output, ref.times[list(chunk)])
    return journal


def _edit_part(path: Path, edit) -> None:
    """Load chunk ``path``, ``edit`` its arrays in place, save it (its digests as they were)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _part_with(journal: Journal, sample: int) -> Path:
    return next(p for p in journal.path.glob("part-*.npz") if sample in np.load(p)["indices"])


@pytest.mark.parametrize(("edit", "what"), [
    (lambda a: a["output"].__setitem__((1, 3), np.nan), "sample 4 holds 1 NaN or infinite value(s) in output"),
    (lambda a: a["input.k"].__setitem__((1, 0), 2.0), "sample 4 does not match its digest in inputs/k"),
    (lambda a: a["indices"].__setitem__(1, 7), "sample 7 does not match its digest in inputs/f"),
])
def test_a_damaged_journal_chunk_is_refused_before_solving(tmp_path, capsys, reference, edit, what):
    out = tmp_path / "j.h5"
    journal = _killed_run(out, reference)
    bad = _part_with(journal, 4)
    _edit_part(bad, edit)
    argv = [*ARGV, "--samples", str(N), "--out", str(out), "--chunk-size", "2"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert f"{bad}: {what}" in line, line
    assert f"delete {bad} and re-run the same command" in line and "--overwrite" in line
    assert not out.exists() and len(list(journal.path.glob("part-*.npz"))) == 2  # nothing solved
    bad.unlink()  # the fix it names works: the chunk's samples are solved again
    assert main_generate(argv) == 0
    _assert_reference(out, reference)
    assert FEFile(out).provenance["runs"][-1]["generated"] == N - 3


def test_a_chunk_damaged_during_the_run_is_refused_before_merging(tmp_path, capsys, reference, monkeypatch):
    from fe_operators.data import generation

    out = tmp_path / "late.h5"
    journal = _killed_run(out, reference, chunks=((0, 1),))
    real = generation.merge_run

    def damage_then_merge(out, journal, *args):
        _edit_part(_part_with(journal, 1), lambda a: a["output"].__setitem__((1, 0), np.inf))
        return real(out, journal, *args)

    monkeypatch.setattr(generation, "merge_run", damage_then_merge)
    argv = [*ARGV, "--samples", str(N), "--out", str(out), "--chunk-size", "2"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    bad = _part_with(journal, 1)
    assert f"{bad}: sample 1 holds 1 NaN or infinite value(s) in output" in line
    assert f"delete {bad} and re-run the same command" in line
    assert not out.exists() and not (journal.path / "merge.h5.tmp").exists()
    assert sorted(journal.indices().tolist()) == list(range(N))  # this run's samples are kept
    monkeypatch.undo()
    bad.unlink()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)


# ----------------------------------------------------------------------------- a full disk
def _fail_chunk_writes_after(monkeypatch, n_ok: int) -> None:
    """Make journal chunk writes after the first ``n_ok`` fail half-way with ENOSPC."""
    real = journal_module._atomic_write
    calls = []

    def full_disk(path, write):
        if path.name.startswith("part-"):
            calls.append(path)
            if len(calls) > n_ok:
                def write(fh):
                    fh.write(b"PK\x03\x04 half a chunk")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write)

    monkeypatch.setattr(journal_module, "_atomic_write", full_disk)


def test_a_full_disk_writing_a_chunk_is_one_line_and_the_run_resumes(tmp_path, capsys, reference, monkeypatch):
    out = tmp_path / "full.h5"
    journal = journal_path(out)
    _fail_chunk_writes_after(monkeypatch, 2)
    argv = [*ARGV, "--samples", str(N), "--out", str(out), "--chunk-size", "2"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"fe-operators generate: error: no space left on device writing {journal}/part-0000-")
    assert line.endswith(f"; free space and re-run the same command to resume (4/{N} samples are kept in {journal})")
    assert not out.exists() and sorted(p.name[:4] for p in journal.iterdir()) == ["part", "part", "sett"]
    monkeypatch.undo()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)
    assert not journal.exists() and FEFile(out).provenance["runs"][-1]["generated"] == N - 4


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), OSError(H5PY_ENOSPC)])
def test_a_full_disk_during_the_merge_keeps_file_and_journal(tmp_path, capsys, reference, monkeypatch, exc):
    out = tmp_path / "merge.h5"
    journal = journal_path(out)
    generate_dataset(PROBLEM, MESH, 4, out, seed=SEED, params=PARAMS, progress=False)
    before = out.read_bytes()
    calls = []

    def full_disk(self, *args):
        calls.append(1)
        if len(calls) > 1:  # after the previous file's samples: half a file written
            raise exc
        return real(self, *args)

    real = DatasetWriter.write
    monkeypatch.setattr(DatasetWriter, "write", full_disk)
    argv = [*ARGV, "--samples", str(N), "--out", str(out), "--chunk-size", "2"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert line == (f"fe-operators generate: error: no space left on device writing {out}; free space and "
                    f"re-run the same command to resume ({N}/{N} samples are kept in {journal} and {out})")
    assert out.read_bytes() == before and FEFile(out).read()  # the previous file, as it was
    assert not list(journal.glob("*.tmp")) and journal.exists()
    monkeypatch.undo()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)
    assert not journal.exists() and FEFile(out).provenance["runs"][-1]["generated"] == 0


def test_a_merge_that_cannot_fit_is_refused_before_writing(tmp_path, capsys, reference, monkeypatch):
    from fe_operators.data import merge

    out = tmp_path / "tight.h5"
    _killed_run(out, reference, chunks=((0, 1, 2, 3, 4, 5, 6, 7),))
    real = merge.shutil.disk_usage
    monkeypatch.setattr(merge.shutil, "disk_usage", lambda path: real(path)._replace(free=50_000))
    monkeypatch.setattr(merge, "create_dataset_file", None)  # never reached
    argv = [*ARGV, "--samples", str(N), "--out", str(out)]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert re.search(f"no space left on device writing {re.escape(str(out))} \\(the file needs at least "
                     r"1\d\d kB, 50 kB are free\); free space and re-run the same command", line), line
    assert f"({N}/{N} samples are kept in {journal_path(out)})" in line
    monkeypatch.undo()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)


def test_a_petsc_write_error_on_a_full_disk_is_named_as_such(tmp_path, capsys, reference, monkeypatch):
    # PETSc says "error code 76" only: the space left on the disk says why
    import types

    import firedrake as fd

    from fe_operators.data import disk, merge

    out = tmp_path / "petsc.h5"
    journal = _killed_run(out, reference, chunks=((0, 1, 2, 3, 4, 5, 6, 7),))

    def save_mesh(self, mesh):
        raise RuntimeError("error code 76\n[0] Error in HDF5 call H5Dcreate2() Status -1")

    monkeypatch.setattr(fd.CheckpointFile, "save_mesh", save_mesh)
    monkeypatch.setattr(merge, "_check_space", lambda *args: None)  # as if the disk filled up meanwhile
    usage = disk.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk, "shutil", types.SimpleNamespace(disk_usage=lambda path: usage._replace(free=4096)))
    argv = [*ARGV, "--samples", str(N), "--out", str(out)]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert f"no space left on device writing {out}; free space and re-run the same command to resume" in line
    assert list(journal.path.iterdir()) and not list(journal.path.glob("merge*"))
    monkeypatch.undo()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)


def test_a_full_disk_in_the_api_is_an_output_error(tmp_path, monkeypatch):
    _fail_chunk_writes_after(monkeypatch, 0)
    with pytest.raises(OutputError, match=r"no space left on device writing .*free space and re-run the same "
                                          r"command to resume \(0/3 samples are kept in"):
        generate_dataset(PROBLEM, MESH, 3, tmp_path / "api.h5", seed=SEED, params=PARAMS, progress=False)


#: ``fe-operators generate`` with every journal chunk write after the first two failing (ENOSPC)
#: on every rank, or (FULL=merge) every write of the final file
_FULL_DISK_SCRIPT = """
import errno, os, sys
from fe_operators.data import journal
from fe_operators.data.h5_writer import DatasetWriter

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

real = journal._atomic_write
if os.environ["FULL"] == "chunks":
    journal._atomic_write = lambda path, write: (
        enospc() if path.name.startswith("part-") and len(list(path.parent.glob("part-*"))) >= 2
        else real(path, write))
else:
    DatasetWriter.write = enospc
from fe_operators.cli.generate import main_generate
sys.exit(main_generate(sys.argv[1:]))
"""


@pytest.mark.slow  # two mpiexec runs: about 80 s on 2 busy cores
def test_a_full_disk_on_every_rank_is_one_line_from_rank_0(tmp_path, reference):
    from fe_operators.parallel import mpiexec_command, mpiexec_env

    out = tmp_path / "mpi.h5"
    journal = journal_path(out)
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    argv = [*ARGV, "--samples", str(N), "--out", str(out), "--chunk-size", "1"]
    for full, kept in (("chunks", 2), ("merge", N)):
        cmd = mpiexec_command(2, [sys.executable, "-c", _FULL_DISK_SCRIPT, *argv])
        proc = subprocess.run(cmd, env=dict(mpiexec_env(), PYTHONPATH=path, FULL=full), cwd=ROOT,
                              capture_output=True, text=True, check=False, timeout=300)
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len([line for line in errors if "error:" in line]) == 1 and "Traceback" not in proc.stderr, errors
        line = next(line for line in errors if "error:" in line)
        assert "no space left on device writing" in line, line
        assert f"re-run the same command to resume ({kept}/{N} samples are kept in {journal})" in line
        assert not out.exists() and not list(journal.glob("*.tmp"))
    assert main_generate(argv) == 0
    _assert_reference(out, reference)
