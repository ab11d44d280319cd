"""Trajectory datasets of time-dependent families (issue 16, item 1).

``fe-operators generate`` of a :class:`~fe_operators.problems.timedep.TimeDependentProblem`
stores trajectories (sample x step x DOF) in the dataset files, with the journal, resume,
provenance, digests, full-disk handling and MPI ensemble of steady data; they read back
with :func:`~fe_operators.data.read_trajectories`.  Navier–Stokes runs on the coarsest DFG
mesh (r = 0.25: 32 cylinder segments, 3,414 Taylor–Hood DOFs), a few steps per trajectory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import firedrake as fd

from fe_operators.cli.generate import main_generate
from fe_operators.cli.info import main_info
from fe_operators.data import FEFile, TrajectoryData, TrajectoryFile, generate_dataset, read_trajectories
from fe_operators.data.journal import Journal
from fe_operators.data.layout import GROUP
from fe_operators.data.settings import run_settings
from fe_operators.data.sources import make_source
from fe_operators.errors import ConfigError, DatasetFileError, NonFiniteError, SettingsMismatchError
from fe_operators.meshes.dfg import dfg_mesh
from fe_operators.parallel import mpiexec_command, mpiexec_env
from fe_operators.problems import FAMILIES, load_problem, problem_class, register_problem
from fe_operators.problems.navier_stokes import NavierStokesCylinder
from fe_operators.problems.timedep import TimeDependentProblem

ROOT = Path(__file__).resolve().parents[1]
NS = "navier_stokes"
SEED = 7
N = 3
TIME = {"n_steps": 4, "store_every": 2, "spinup_steps": 1}
TIME_ARGV = ["--steps", "4", "--store-every", "2", "--spinup", "1"]


@register_problem("toy_decay")
class ToyDecay(TimeDependentProblem):
    """``u' = -k u`` by backward Euler on CG1 (a mass-matrix solve per step): ``u_n = u_0 / (1 + k dt)^n``.

    A time-dependent family registered by the decorator alone, as a user's would be.
    """

    history = 0

    def __init__(self, mesh: fd.MeshGeometry, dt: float = 0.1, rate_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__(mesh, dt, rate_range=[float(r) for r in rate_range])
        V = fd.FunctionSpace(mesh, "CG", 1)
        self._V, self._old, self._new, self._k = V, fd.Function(V), fd.Function(V), fd.Constant(1.0)
        u, v = fd.TrialFunction(V), fd.TestFunction(V)
        lvp = fd.LinearVariationalProblem((1 + self._k * dt) * u * v * fd.dx, self._old * v * fd.dx, self._new)
        self._solver = fd.LinearVariationalSolver(
            lvp, solver_parameters={"ksp_type": "preonly", "pc_type": "lu", "mat_type": "aij"})

    @property
    def state_space(self) -> fd.FunctionSpace:
        return self._V

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return ("k",)

    def sample_parameters(self, rng: np.random.Generator) -> dict[str, float]:
        return {"k": float(rng.uniform(*self.params["rate_range"]))}

    def initial_state(self, params) -> fd.Function:
        x, y = fd.SpatialCoordinate(self.mesh)
        return fd.Function(self._V).interpolate(1 + x * (1 - x) + y)

    def step(self, state, params, previous=()) -> fd.Function:
        self._old.assign(state)
        self._k.assign(params["k"])
        self._solver.solve()
        return self._new.copy(deepcopy=True)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> str:
    return str(dfg_mesh(tmp_path_factory.mktemp("dfg"), 0.25))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mesh) -> Path:
    """An uninterrupted run of N short NS trajectories."""
    out = tmp_path_factory.mktemp("traj") / "ref.h5"
    generate_dataset(NS, mesh, N, out, seed=SEED, time=TIME, progress=False)
    return out


def _killed_run(out: Path, reference: Path, mesh: str, chunks) -> Journal:
    """The journal a run killed after journalling ``chunks`` of the reference's trajectories leaves."""
    prob = load_problem(NS, mesh, {})
    journal = Journal(out)
    journal.path.mkdir()
    journal.start(run_settings(NS, mesh, prob, SEED, make_source(prob, TIME)))
    ref = TrajectoryFile(reference)
    for chunk in chunks:
        params, states = ref.read(chunk)
        journal.write_part(0, chunk, {"params": params}, states, ref.times[list(chunk)])
    return journal


def _assert_reference(path: Path, reference: Path) -> None:
    got, want = read_trajectories(path), read_trajectories(reference)
    assert np.array_equal(got.states, want.states) and np.array_equal(got.params, want.params)


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- contents
def test_every_kth_state():
    """TrajectoryData.every(k): states 0, k, 2k, ... and dt times k; k must be a positive integer."""
    states = np.arange(2 * 7 * 3, dtype=float).reshape(2, 7, 3)
    data = TrajectoryData(states, np.ones((2, 1)), ["a"], dt=0.5)
    three = data.every(3)
    np.testing.assert_array_equal(three.states, states[:, [0, 3, 6]])
    assert three.dt == 1.5 and three.n_stored == 3 and three.times.tolist() == [0.0, 1.5, 3.0]
    assert data.every(1).states.shape == states.shape
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            data.every(bad)


def test_read_back_equals_the_problems_trajectories_bitwise(reference, mesh):
    data = read_trajectories(reference)
    assert data.states.shape == (N, 3, 3414) and data.params.shape == (N, 1)
    assert tuple(data.param_names) == ("Re",) and data.dt == pytest.approx(2 / 400, rel=1e-15)
    assert data.problem["problem"] == NS and data.problem["params"]["dt"] == 1 / 400
    problem = load_problem(NS, mesh, {})
    for i in range(N):  # trajectory i: parameters from default_rng([seed, i]), then problem.trajectory
        params = problem.sample_parameters(np.random.default_rng([SEED, i]))
        assert data.params[i, 0] == params["Re"]
        assert np.array_equal(data.states[i], problem.trajectory(params, **TIME))
    f = TrajectoryFile(reference)
    prov = f.provenance
    assert prov["kind"] == "trajectories" and prov["time"] == {**TIME, "dt": 1 / 400} and f.mesh_spec == mesh
    assert prov["solver_parameters"]["step"]["pc_factor_mat_solver_type"] == "mumps"
    assert prov["versions"]["firedrake"] and prov["runs"][-1]["generated"] == N
    # a subset, in the order asked for, and the generating problem rebuilt with a checked numbering
    sub = read_trajectories(reference, [2, 0])
    assert np.array_equal(sub.states, data.states[[2, 0]]) and np.array_equal(sub.params, data.params[[2, 0]])
    rebuilt = f.rebuild_problem()
    assert isinstance(rebuilt, NavierStokesCylinder) and rebuilt.n_dofs == 3414
    state = rebuilt.array_to_state(data.states[1, -1])
    assert rebuilt.divergence_ratio(state) < 0.2  # a velocity field, not shuffled numbers
    # the mesh and space stored in the file give the same field, without the mesh file
    spaces = f.rebuild()
    stored = spaces.to_function(data.states[1, -1])
    for a, b in zip(stored.subfunctions, state.subfunctions):
        assert fd.assemble(fd.inner(a, a) * fd.dx) == pytest.approx(fd.assemble(fd.inner(b, b) * fd.dx), rel=1e-13)
        assert fd.assemble(a[0] * fd.dx if a.ufl_shape else a * fd.dx) == pytest.approx(
            fd.assemble(b[0] * fd.dx if b.ufl_shape else b * fd.dx), rel=1e-12, abs=1e-14)


def test_steady_and_trajectory_readers_refuse_each_others_files(reference, tmp_path, capsys):
    with pytest.raises(DatasetFileError, match=r"holds trajectories of the time-dependent family 'navier_stokes' "
                                               r"\(3 trajectories x 3 states x 3414 DOFs\).*read_trajectories"):
        FEFile(reference)
    steady = tmp_path / "steady.h5"
    generate_dataset("poisson", "unitsquare:4", 2, steady, progress=False)
    with pytest.raises(DatasetFileError, match="holds steady samples .*not trajectories.*FEFile"):
        read_trajectories(steady)
    # info reads both kinds
    capsys.readouterr()
    assert main_info([str(steady), str(tmp_path / "missing.h5")]) == 1
    captured = capsys.readouterr()
    assert "steady dataset of poisson on mesh unitsquare:4" in captured.out
    assert "inputs: f (25,), g (25,)" in captured.out and "output: (25,)" in captured.out
    assert f"no dataset file at {tmp_path / 'missing.h5'}" in captured.err
    # generating trajectories over a steady file (or the reverse) is refused unless --overwrite
    with pytest.raises(DatasetFileError, match="not a readable fe_operators dataset.*holds steady samples"):
        generate_dataset("toy_decay", "unitsquare:4", 2, steady, time={"n_steps": 1}, progress=False)
    copy = tmp_path / "traj.h5"
    shutil.copy(reference, copy)
    with pytest.raises(DatasetFileError, match="not a readable fe_operators dataset.*holds trajectories"):
        generate_dataset("poisson", "unitsquare:4", 2, copy, progress=False)


def test_registration_alone_makes_a_family_generate(tmp_path):
    """``@register_problem`` on a TimeDependentProblem: generated by name, rebuilt from the file, exact."""
    assert FAMILIES["toy_decay"] == f"{__name__}:ToyDecay" and problem_class(NS) is NavierStokesCylinder
    out = tmp_path / "decay.h5"
    time = {"n_steps": 6, "store_every": 3, "spinup_steps": 2}
    generate_dataset("toy_decay", "unitsquare:4", 3, out, seed=1, params={"dt": 0.05}, time=time, progress=False)
    data = read_trajectories(out)
    prob = TrajectoryFile(out).rebuild_problem()  # from the registry: no import of a module the file names
    assert isinstance(prob, ToyDecay) and data.states.shape == (3, 3, 25) and data.dt == pytest.approx(0.15)
    u0 = prob.state_to_array(prob.initial_state({}))
    steps = np.array([2, 5, 8])  # spin-up 2, then every 3rd of 6 steps
    exact = u0[None, None, :] / (1 + data.params[:, 0, None, None] * 0.05) ** steps[None, :, None]
    np.testing.assert_allclose(data.states, exact, rtol=1e-13)
    assert len(set(data.params[:, 0])) == 3


def test_time_settings_are_checked_before_the_mesh(tmp_path):
    out = tmp_path / "x.h5"
    with pytest.raises(ConfigError, match="n_steps: a time-dependent family needs the number of steps"):
        generate_dataset("toy_decay", "no_such_mesh", 2, out, progress=False)
    with pytest.raises(ConfigError, match="n_steps: expected a multiple of store_every = 2"):
        generate_dataset("toy_decay", "no_such_mesh", 2, out, time={"n_steps": 3, "store_every": 2})
    with pytest.raises(ConfigError, match="spinup: unknown time setting"):
        generate_dataset("toy_decay", "no_such_mesh", 2, out, time={"n_steps": 3, "spinup": 2})
    with pytest.raises(ConfigError, match="time settings apply to time-dependent families only; 'poisson'"):
        generate_dataset("poisson", "no_such_mesh", 2, out, time={"n_steps": 3})
    assert not out.exists()


# ----------------------------------------------------------------------------- resume, extend, settings
def test_resume_after_a_deleted_journal_chunk_solves_only_its_trajectories(tmp_path, reference, mesh):
    out = tmp_path / "resume.h5"
    journal = _killed_run(out, reference, mesh, chunks=((0,), (1,), (2,)))
    lost = next(p for p in journal.path.glob("part-*.npz") if 1 in np.load(p)["indices"])
    lost.unlink()
    report = generate_dataset(NS, mesh, N, out, seed=SEED, time=TIME, progress=False)
    assert report.generated == 1 and TrajectoryFile(out).provenance["runs"][-1]["generated"] == 1
    assert not journal.exists
    _assert_reference(out, reference)
    # extending the file solves only the new trajectory; other time settings are refused by name
    report = generate_dataset(NS, mesh, N + 1, out, seed=SEED, time=TIME, progress=False)
    assert report.generated == 1 and report.n_done == N + 1
    data = read_trajectories(out)
    assert np.array_equal(data.states[:N], read_trajectories(reference).states)
    with pytest.raises(SettingsMismatchError, match="time.n_steps"):
        generate_dataset(NS, mesh, N + 1, out, seed=SEED, time={**TIME, "n_steps": 6}, progress=False)


def test_a_merge_that_cannot_fit_is_refused_and_resumed(tmp_path, capsys, reference, mesh, monkeypatch):
    from fe_operators.data import merge

    out = tmp_path / "tight.h5"
    journal = _killed_run(out, reference, mesh, chunks=((0, 1, 2),))
    real = merge.shutil.disk_usage
    monkeypatch.setattr(merge.shutil, "disk_usage", lambda path: real(path)._replace(free=200_000))
    argv = [NS, "--mesh", mesh, "--samples", str(N), "--out", str(out), "--seed", str(SEED), *TIME_ARGV, "-q"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    found = re.search(r"no space left on device writing .*tight\.h5 \(the file needs at least (\d+) kB, 200 kB are "
                      r"free\); free space and re-run the same command", line)
    assert found, line
    # a lower bound of the file's size that counts the trajectories (3 x 3 x 3414 float64: 246 kB)
    assert 246 < int(found.group(1)) <= os.path.getsize(reference) / 1000
    assert f"(3/3 samples are kept in {journal.path})" in line
    monkeypatch.undo()
    assert main_generate(argv) == 0
    _assert_reference(out, reference)


# ----------------------------------------------------------------------------- integrity
def test_a_damaged_trajectory_is_refused_naming_it(tmp_path, reference):
    bad = tmp_path / "bad.h5"
    shutil.copy(reference, bad)
    with h5py.File(bad, "r+") as h5:
        h5[f"{GROUP}/states"][1, 2, 100] += 1e-9
    with pytest.raises(DatasetFileError, match=f"{re.escape(str(bad))}: sample 1 is damaged: its states values "
                                               "do not match the digest"):
        read_trajectories(bad)
    assert read_trajectories(bad, [0, 2]).n_samples == 2  # the others still read
    with h5py.File(bad, "r+") as h5:
        h5[f"{GROUP}/params"][2, 0] = np.nan
    with pytest.raises(NonFiniteError, match="sample 2 holds 1 NaN or infinite value"):
        read_trajectories(bad, [2])
    with pytest.raises(DatasetFileError, match="sample 1 is damaged"):
        TrajectoryFile(bad).check()


def test_a_damaged_journal_chunk_is_refused_before_solving(tmp_path, capsys, reference, mesh):
    out = tmp_path / "j.h5"
    journal = _killed_run(out, reference, mesh, chunks=((0, 1),))
    (part,) = journal.path.glob("part-*.npz")
    with np.load(part) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["output"][1, 1, 7] += 1e-3
    with open(part, "wb") as fh:
        np.savez(fh, **arrays)
    argv = [NS, "--mesh", mesh, "--samples", str(N), "--out", str(out), "--seed", str(SEED), *TIME_ARGV, "-q"]
    assert main_generate(argv) == 1
    line = _one_error_line(capsys)
    assert f"{part}: sample 1 does not match its digest in output" in line and f"delete {part}" in line
    assert not out.exists()


def test_a_problem_class_named_by_the_file_is_never_imported(tmp_path, reference):
    bad = tmp_path / "named.h5"
    shutil.copy(reference, bad)
    with h5py.File(bad, "r+") as h5:
        prov = json.loads(h5[GROUP].attrs["provenance"])
        h5[GROUP].attrs["provenance"] = json.dumps({**prov, "problem": "traj_sentinel_module:Evil"})
    f = TrajectoryFile(bad)
    assert f.data().n_samples == N  # the arrays are data: they read
    with pytest.raises(DatasetFileError, match="not a registered family; fe_operators never imports code a file "
                                               "names"):
        f.rebuild_problem()
    assert "traj_sentinel_module" not in sys.modules


# ----------------------------------------------------------------------------- MPI and the command line
@pytest.mark.slow
def test_two_ranks_produce_the_serial_trajectories(tmp_path, reference, mesh):
    """``mpiexec -n 2``: the ranks share the trajectories and the file equals the serial one bitwise (55 s
    under load, 2 shared cores)."""
    out = tmp_path / "mpi.h5"
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(mpiexec_env(), PYTHONPATH=path)
    exe = str(Path(sys.executable).parent / "fe-operators")
    cmd = mpiexec_command(2, [exe, "generate", NS, "--mesh", mesh, "--samples", str(N), "--seed", str(SEED),
                              *TIME_ARGV, "--out", str(out), "--quiet"])
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=400)
    assert proc.returncode == 0, proc.stderr
    assert TrajectoryFile(out).provenance["runs"][-1]["ranks"] == 2
    _assert_reference(out, reference)


def test_cli_generate_from_a_config_file_and_info(tmp_path, capsys, reference, mesh):
    shutil.copy(mesh, tmp_path / "channel.msh")
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({"problem": NS, "mesh": "channel.msh", "samples": 2, "out": "ns.h5",
                                      "seed": SEED, "params": {"dt": 1 / 400}, "time": TIME}))
    assert main_generate(["--config", str(config), "-q"]) == 0
    out = tmp_path / "ns.h5"
    got, want = read_trajectories(out), read_trajectories(reference, [0, 1])
    assert np.array_equal(got.states, want.states)  # the same mesh file under another name
    assert TrajectoryFile(out).provenance["mesh"] == str(tmp_path / "channel.msh")
    assert main_info([str(out)]) == 0
    text = capsys.readouterr().out
    assert "trajectories dataset of navier_stokes" in text
    assert "2 x 3 stored states x 3414 DOFs (sample x step x DOF)" in text
    assert "dt 0.0025, 1 spin-up steps, then 4 steps, every 2 stored (stored states 0.005 apart)" in text
    # an option on the command line wins over the file, and a bad one is named as typed
    assert main_generate(["--config", str(config), "--steps", "3", "-q"]) == 2
    assert "--steps: expected a multiple of store_every = 2, got 3" in _one_error_line(capsys)
    config.write_text(yaml.safe_dump({"problem": NS, "mesh": "channel.msh", "samples": 2, "out": "ns.h5",
                                      "time": {"steps": 4}}))
    assert main_generate(["--config", str(config), "-q"]) == 2
    assert f"{config}: time.steps: unknown time setting" in _one_error_line(capsys)
    assert main_generate(["poisson", "--mesh", "unitsquare:4", "--samples", "1", "--out", str(tmp_path / "p.h5"),
                          "--steps", "2", "-q"]) == 2
    assert "--steps: time settings apply to time-dependent families only" in _one_error_line(capsys)
    assert main_generate([NS, "--mesh", mesh, "--samples", "1", "--out", str(tmp_path / "q.h5"), "-q"]) == 2
    assert "--steps: a time-dependent family needs the number of steps" in _one_error_line(capsys)
