"""``fe-operators generate``: resume after SIGKILL, extension, settings checks, failures, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fe_operators.data import FEFile, GenerationError, SettingsMismatchError
from fe_operators.cli.generate import main_generate
from fe_operators.data import generate_dataset
from fe_operators.data.journal import Journal, journal_path

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "test_data_problems:SmallPoisson"
MESH = "unitsquare:8"
SEED = 3
PARAMS = {"diffusion": "dg0"}
N_REF = 240


def _env() -> dict[str, str]:
    """Environment of a generator subprocess (tests/ importable for the test problem)."""
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def _cmd(out: Path, n: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fe_operators.cli", "generate", PROBLEM, "--mesh", MESH,
            "--samples", str(n), "--out", str(out), "--seed", str(SEED), "--diffusion", "dg0",
            "--quiet", *extra]


def _assert_same_samples(path: Path, reference: Path, n: int, atol: float = 1e-12) -> None:
    """The file holds exactly the reference's first ``n`` samples, all valid."""
    got, ref = FEFile(path), FEFile(reference)
    assert got.n_samples == n and got.complete
    (gi, go), (ri, ro) = got.read(range(n)), ref.read(range(n))
    assert set(gi) == set(ri) == {"f", "k"}
    for name in gi:  # inputs come from the same random numbers: bit for bit
        assert np.array_equal(gi[name], ri[name])
    assert np.allclose(go, ro, rtol=0, atol=atol)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted serial run."""
    out = tmp_path_factory.mktemp("reference") / "ref.h5"
    report = generate_dataset(PROBLEM, MESH, N_REF, out, seed=SEED, params=PARAMS, progress=False)
    assert report.generated == N_REF and report.n_done == N_REF
    return out


def test_rerun_after_sigkill_completes_the_file(tmp_path, reference):
    out = tmp_path / "killed.h5"
    journal = journal_path(out)
    rng = np.random.default_rng()
    cmd = _cmd(out, N_REF, "--chunk-size", "3")

    def parts() -> int:
        return len(list(journal.glob("part-*.npz"))) if journal.is_dir() else 0

    kills = 0
    for target in ("samples", "samples", "merge"):
        proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stderr=subprocess.DEVNULL)
        before = parts()
        while proc.poll() is None:  # wait for progress (or the merge), then strike at a random time
            if (target == "samples" and parts() > before) or (journal / "merge.h5.tmp").exists():
                break
            time.sleep(0.002)
        if target == "samples":
            time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        if out.exists():  # the output file is never left half-written
            FEFile(out)
    assert kills >= 2
    # what the interrupted runs left: journalled chunks (and a file, if a merge finished)
    kept = set(Journal(out).indices().tolist())
    if out.exists():
        kept |= set(np.flatnonzero(FEFile(out).done).tolist())
    assert kept  # two kills came after progress was journalled
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not journal.exists()
    _assert_same_samples(out, reference, N_REF)
    # the rerun solved only the missing samples: it reused the journal
    assert FEFile(out).provenance["runs"][-1]["generated"] == N_REF - len(kept)


def test_more_samples_extend_the_file(tmp_path, reference):
    out = tmp_path / "grow.h5"
    generate_dataset(PROBLEM, MESH, 10, out, seed=SEED, params=PARAMS, progress=False, chunk_size=4)
    report = generate_dataset(PROBLEM, MESH, 25, out, seed=SEED, params=PARAMS, progress=False)
    assert report.generated == 15
    _assert_same_samples(out, reference, 25)
    assert [run["generated"] for run in FEFile(out).provenance["runs"]] == [10, 15]
    fewer = generate_dataset(PROBLEM, MESH, 5, out, seed=SEED, params=PARAMS, progress=False)
    assert fewer.generated == 0 and FEFile(out).n_samples == 25


def test_other_settings_are_an_error_unless_overwrite(tmp_path):
    out = tmp_path / "settings.h5"
    generate_dataset(PROBLEM, MESH, 4, out, seed=SEED, params=PARAMS, progress=False)
    with pytest.raises(SettingsMismatchError) as err:
        generate_dataset(PROBLEM, MESH, 4, out, seed=SEED + 1, params={"diffusion": "const"}, progress=False)
    assert {"seed", "params.diffusion"} <= set(err.value.differing)
    assert "--overwrite" in str(err.value)
    with pytest.raises(SettingsMismatchError, match="numbering"):
        generate_dataset(PROBLEM, "unitsquare:9", 4, out, seed=SEED, params=PARAMS, progress=False)
    generate_dataset(PROBLEM, MESH, 3, out, seed=SEED + 1, params=PARAMS, progress=False, overwrite=True)
    f = FEFile(out)
    assert f.provenance["seed"] == SEED + 1 and f.n_samples == 3 and f.complete


def test_solver_options_are_recorded_and_files_without_them_still_extend(tmp_path, reference):
    out = tmp_path / "options.h5"
    generate_dataset(PROBLEM, MESH, 4, out, seed=SEED, params=PARAMS, progress=False)
    assert FEFile(out).provenance["solver_parameters"] == {"ksp_type": "preonly", "pc_type": "lu"}
    with h5py.File(out, "r+") as h5:  # as written before the options were recorded
        g = h5["fe_operators"]
        prov = json.loads(g.attrs["provenance"])
        g.attrs["provenance"] = json.dumps(dict(prov, solver_parameters=None))
    report = generate_dataset(PROBLEM, MESH, 6, out, seed=SEED, params=PARAMS, progress=False)
    assert report.generated == 2
    _assert_same_samples(out, reference, 6)
    assert FEFile(out).provenance["solver_parameters"] == {"ksp_type": "preonly", "pc_type": "lu"}


def test_a_failed_solve_stops_the_run_and_is_not_stored(tmp_path, reference):
    out = tmp_path / "fail.h5"
    params = dict(PARAMS, fail_sample=7)
    with pytest.raises(GenerationError) as err:
        generate_dataset(PROBLEM, MESH, 12, out, seed=SEED, params=params, progress=False, chunk_size=3)
    assert err.value.sample == 7
    assert "sample 7" in str(err.value) and "PETSc reason -3 (KSP_DIVERGED" in str(err.value)
    f = FEFile(out)
    assert np.array_equal(np.flatnonzero(f.done), np.arange(7)) and not f.complete
    inputs, output = f.read()
    ref_inputs, ref_output = FEFile(reference).read(range(7))
    assert np.array_equal(inputs["k"], ref_inputs["k"]) and np.allclose(output, ref_output, rtol=0, atol=1e-12)
    with h5py.File(out, "r") as h5:  # the failed row holds no values
        assert np.isnan(h5["fe_operators/output"][7]).all()
    assert FEFile(out).provenance["runs"][-1]["failed_sample"] == 7


def test_cli_failure_message_names_sample_and_reason(tmp_path, capsys):
    out = tmp_path / "fail_cli.h5"
    argv = [PROBLEM, "--mesh", "unitsquare:4", "--samples", "4", "--out", str(out), "--fail-sample", "0", "-q"]
    assert main_generate(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sample 0 failed" in err[0] and "PETSc reason -3" in err[0]
    assert not out.exists()  # nothing valid to store: no file


def test_a_failed_newton_solve_is_named_by_its_snes_reason(tmp_path, capsys):
    argv = ["nonlinear", "--mesh", "unitsquare:4", "--samples", "2", "--out", str(tmp_path / "nl.h5"),
            "--solver_parameters", '{"snes_max_it": 1}', "-q"]
    assert main_generate(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sample 0 failed" in err[0], err
    assert "PETSc reason -5 (SNES_DIVERGED_MAX_IT)" in err[0] and "KSP_" not in err[0]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["nope", "--mesh", MESH, "--samples", "2"], 1, "unknown problem 'nope'; known problems: darcy"),
        ([PROBLEM, "--mesh", "no_such_mesh", "--samples", "2"], 1, "no_such_mesh"),
        ([PROBLEM, "--mesh", MESH, "--samples", "0"], 2, "expected a positive integer, got 0"),
        ([PROBLEM, "--mesh", MESH, "--samples", "2", "--diffusion"], 2, "--diffusion needs a value"),
        ([PROBLEM, "--mesh", MESH, "--samples", "2", "--diffusion", "cubic"], 1,
         "expected diffusion 'const' or 'dg0', got 'cubic'"),
        # problem options are checked against the constructor's annotations, by name: a
        # configuration error, exit 2 (the runner's status for every command)
        (["darcy", "--mesh", MESH, "--samples", "2", "--length_scale", "abc"], 2,
         "problem option --length_scale: expected a number (float) for problem 'darcy', got str 'abc'"),
        (["darcy", "--mesh", MESH, "--samples", "2", "--zero-mean", "maybe"], 2,
         "problem option --zero_mean: expected true or false"),
        ([PROBLEM, "--mesh", MESH, "--samples", "2", "--fail-sample", "1.5"], 2,
         "problem option --fail_sample: expected an integer or null for problem "),
        ([PROBLEM, "--mesh", MESH, "--samples", "2", "--param", "difusion=dg0"], 2,
         "problem option --difusion: unknown parameter of problem 'test_data_problems:SmallPoisson'; "
         "its parameters are diffusion, fail_sample"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, argv, status, message):
    assert main_generate([*argv, "--out", str(tmp_path / "x.h5")]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)
    assert len([line for line in err if "error:" in line]) == 1


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [(tmp_path / "missing" / "x.h5", "does not exist"), (blocker / "x.h5", "is not a directory"),
             (tmp_path, "is a directory")]
    for out, message in cases:
        assert main_generate([PROBLEM, "--mesh", MESH, "--samples", "2", "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_a_foreign_file_is_not_overwritten_silently(tmp_path):
    out = tmp_path / "foreign.h5"
    with h5py.File(out, "w") as h5:
        h5["x"] = 1
    with pytest.raises(ValueError, match="not a readable fe_operators dataset"):
        generate_dataset(PROBLEM, MESH, 2, out, seed=SEED, params=PARAMS, progress=False)
    generate_dataset(PROBLEM, MESH, 2, out, seed=SEED, params=PARAMS, progress=False, overwrite=True)
    assert FEFile(out).complete


def test_two_runs_never_write_one_file(tmp_path):
    from fe_operators.data import OutputError

    out = tmp_path / "busy.h5"
    other = Journal(out)
    other.lock()  # as a run in another process would
    try:
        with pytest.raises(OutputError, match="another fe-operators generate is writing"):
            generate_dataset(PROBLEM, MESH, 2, out, seed=SEED, params=PARAMS, progress=False)
    finally:
        other.unlock()
    generate_dataset(PROBLEM, MESH, 2, out, seed=SEED, params=PARAMS, progress=False)
    assert FEFile(out).complete and not journal_path(out).exists()


def _journal_of_a_killed_run(out: Path):
    """The journal a run of (PROBLEM, MESH, SEED, PARAMS) leaves when killed after its settings."""
    from fe_operators.data.journal import Journal
    from fe_operators.data.settings import run_settings
    from fe_operators.problems import load_problem

    journal = Journal(out)
    journal.path.mkdir()
    journal.start(run_settings(PROBLEM, MESH, load_problem(PROBLEM, MESH, PARAMS), SEED))
    return journal


def test_a_damaged_journal_part_is_refused_before_solving(tmp_path, capsys, reference):
    # a part of the wrong shape was found only when merging, after all solves, and again on every rerun
    out = tmp_path / "journal.h5"
    journal = _journal_of_a_killed_run(out)
    journal.write_part(0, [0, 1], {"f": np.zeros((2, 82)), "k": np.zeros((2, 128))}, np.zeros((2, 81)), [0.1, 0.1])
    (bad,) = journal.path.glob("part-*.npz")
    argv = [PROBLEM, "--mesh", MESH, "--samples", "6", "--out", str(out), "--seed", str(SEED),
            "--diffusion", "dg0", "-q", "--chunk-size", "2"]
    for _ in range(2):
        assert main_generate(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{bad}: its array 'input.f' has shape (2, 82)" in err[0], err
        assert "expected (2, 81)" in err[0] and f"delete {bad}" in err[0] and "--overwrite" in err[0]
        assert list(journal.path.glob("part-*.npz")) == [bad] and not out.exists()  # nothing solved
    bad.unlink()
    assert main_generate(argv) == 0
    _assert_same_samples(out, reference, 6)


def test_a_broken_journal_settings_file_names_the_file_and_the_fix(tmp_path, capsys, reference):
    out = tmp_path / "settings.h5"
    journal = _journal_of_a_killed_run(out)
    (journal.path / "settings.json").write_text('{"problem": ')
    argv = [PROBLEM, "--mesh", MESH, "--samples", "3", "--out", str(out), "--seed", str(SEED),
            "--diffusion", "dg0", "-q"]
    assert main_generate(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{journal.path / 'settings.json'}: it cannot be read as JSON" in err[0], err
    assert f"delete {journal.path}" in err[0] and "--overwrite" in err[0]
    assert main_generate([*argv, "--overwrite"]) == 0  # the fix it names works
    _assert_same_samples(out, reference, 3)


def test_progress_bar_shows_samples_per_second(tmp_path, capsys):
    generate_dataset(PROBLEM, MESH, 3, tmp_path / "bar.h5", seed=SEED, params=PARAMS, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "sample/s" in err


def _imports(path: Path) -> set[str]:
    """fe_operators modules ``path`` imports anywhere (top level or inside functions)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fe_operators."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fe_operators"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # submodules, if any
    return found


def test_data_problems_and_io_modules_import_no_cycle():
    # h5.rebuild_problem once imported load_problem from generate, which imports h5
    package = ROOT / "fe_operators"
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts): p
        for sub in ("data", "problems", "io") for p in (package / sub).glob("*.py") if p.name != "__init__.py"
    }
    graph = {m: sorted(_imports(p) & set(modules) - {m}) for m, p in modules.items()}
    assert "fe_operators.problems.registry" in graph["fe_operators.data.h5"]
    state: dict[str, int] = {}  # 1 on the path, 2 finished

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path[path.index(n):] + [m, n])}"
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
