"""bench_pc runs end to end (``--quick``): every solve converges and every ratio line is printed."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_pc  # noqa: E402


@pytest.mark.slow
def test_bench_pc_quick_run_converges_and_prints_every_ratio(tmp_path, capsys):
    assert bench_pc.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ratios = re.findall(r"^ratio (\S+) (\S+)", out, flags=re.M)
    names = {re.sub(r"_(\d+|1M|4M)$", "", k) for k, _ in ratios}
    assert names == set(bench_pc.TARGETS)  # every ratio of the benchmark section
    # the two sizes of pc_vs_best_classical_time (the largest of --sizes and --large)
    assert len([k for k, _ in ratios if k.startswith("pc_vs_best_classical_time_")]) == 2
    assert all(float(v) > 0 for _, v in ratios)
    assert re.search(r"^targets: .*pc_vs_gamg_time_elasticity <= 1.*; met \d+ of 11", out, flags=re.M)
    assert "every solve converged to rtol 1e-8 on the recomputed true residual" in out
    assert not re.search(r"^# ratio .* not measured", out, flags=re.M)
    assert re.search(r"^neural_mg on 2 rank\(s\): 4225 DOFs.*converged yes", out, flags=re.M)
    # the out-of-family operators were solved by every learned PC and GAMG, to the true tolerance
    table = re.findall(r"^(checkerboard|anisotropic)\s+(\w+)\s+(\d+)\s+(\S+)\s+(yes|NO)", out, flags=re.M)
    assert {(k, m) for k, m, *_ in table} == {(k, m) for k in ("checkerboard", "anisotropic")
                                              for m in ("neural_mg", "neural_mg_rediscretised", "dcdm", "gamg")}
    assert all(ok == "yes" for *_, ok in table)
    assert "hypre" in out
    # NeuralMG's sweeps searched as the classical options are: a network per count, the fastest kept
    assert re.search(r"^neural_mg \[sweeps 1, neural_mg_1sweep\]: .* converged True", out, flags=re.M)
    assert re.search(r"^neural_mg \[sweeps 2, neural_mg\]: .* converged True", out, flags=re.M)
    assert re.search(r"^neural_mg: best sweeps \[[12]\] \(neural_mg(_1sweep)?\)", out, flags=re.M)
    assert (tmp_path / "neural_mg_1sweep_quick.pt").exists()
    # a rerun reuses a checkpoint trained with the same configuration, and retrains on a changed one
    quick = {**bench_pc.NEURAL_MG_CONFIG, "train": {**bench_pc.NEURAL_MG_CONFIG["train"], "steps": 20}}
    before = (tmp_path / "neural_mg_quick.pt").stat().st_mtime_ns
    bench_pc.train_cached(quick, tmp_path, "neural_mg_quick", retrain=False)
    assert "neural_mg_quick: cached" in capsys.readouterr().out
    assert (tmp_path / "neural_mg_quick.pt").stat().st_mtime_ns == before


def test_sections_alone_and_the_report_of_what_did_not_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_pc.parse_args(["--section", "sizes,nope"])
    assert "unknown nope" in capsys.readouterr().err
    assert bench_pc._parent("plate_holes/r4") == "plate_holes/r3"
    assert bench_pc._parent("unitsquare:24/r4") == "unitsquare:24/r3"
    assert [bench_pc._tag(n) for n in (1_050_625, 4_198_401, 66_049)] == ["1M", "4M", "66049"]
    assert bench_pc._unit_square_dofs("unitsquare:16/r7") == 4_198_401
    assert bench_pc._unit_square_dofs("plate_holes/r2") is None
    # rank 0's JSON line, with a colour reset another rank wrote on the same line
    assert bench_pc._json_lines('warn\n\x1b[0m{"its": 10}\x1b[0m\nnot {json') == [{"its": 10}]
    bench = bench_pc.Bench(bench_pc.parse_args(["--out", str(tmp_path)]))
    bench.ratios = {"pc_vs_best_classical_time_1M": 0.65, "pc_vs_gamg_time_cg2": 1.3, "pc_mpi2_speedup_1M": 1.7}
    bench.missing = {"dcdm_vs_icc_time_1M": "DCDM projected 900 s"}
    bench.report()
    out = capsys.readouterr().out
    assert "ratio pc_vs_best_classical_time_1M 0.650   (target <= 0.7, met)" in out
    assert "ratio pc_vs_gamg_time_cg2 1.300   (target <= 1, MISSED)" in out
    assert "ratio pc_mpi2_speedup_1M 1.700   (report)" in out
    assert "; met 1 of 2, missed pc_vs_gamg_time_cg2" in out
    assert "# ratio dcdm_vs_icc_time_1M not measured: DCDM projected 900 s" in out


def test_coefficients_of_the_large_size_and_of_mpiexec():
    """CoarseLogNormal is the log-normal field of a coarser level, P1-interpolated to the mesh (two levels
    down here); FourierLogField's log-coefficient has about the variance asked for."""
    import firedrake as fd
    import numpy as np
    from bench_pc_fields import CoarseLogNormal, FourierLogField
    from firedrake.mg.utils import get_level

    from fe_operators.io import load_mesh
    from fe_operators.problems.darcy import DarcyProblem

    mesh = load_mesh("unitsquare:8/r4")
    problem = CoarseLogNormal(mesh, max_sample_dofs=1500)
    assert problem.sample_level == 2  # 1089 vertices; level 3 has 4225
    a = problem.sample_inputs(np.random.default_rng(3))["a"]
    hierarchy, _ = get_level(mesh)
    coarse = DarcyProblem(hierarchy[2], coefficient="lognormal", variance=2.0).sample_inputs(
        np.random.default_rng(3))["a"]
    ref = fd.Function(fd.FunctionSpace(mesh, "CG", 1)).interpolate(coarse)
    assert np.abs(a.dat.data_ro - ref.dat.data_ro).max() < 1e-10 * ref.dat.data_ro.max()
    assert a.dat.data_ro.min() > 0 and a.dat.data_ro.max() / a.dat.data_ro.min() > 10
    logs = [np.log(FourierLogField(mesh).sample_inputs(np.random.default_rng(s))["a"].dat.data_ro) for s in range(8)]
    assert 1.5 < np.mean([g.var() for g in logs]) < 2.5  # variance 2 asked (2.05 over these 8)


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
