"""bench_pc runs end to end (``--quick``): every solve converges and every ratio line is printed."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_pc  # noqa: E402


def test_bench_pc_quick_run_converges_and_prints_every_ratio(tmp_path, capsys):
    assert bench_pc.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ratios = dict(re.findall(r"^ratio (\S+) (\S+)", out, flags=re.M))
    names = {re.sub(r"_\d+$", "", k) for k in ratios}
    assert names == {"pc_vs_best_classical_time", "pc_its_growth", "pc_its", "dcdm_its_vs_icc",
                     "pc_its_vs_gamg_unstructured", "pc_its_vs_gamg_3d", "pc_its_growth_rediscretised",
                     "pc_rediscretised_vs_galerkin_setup"}
    assert all(float(v) > 0 for v in ratios.values())
    # the out-of-family operators were solved by every learned PC and GAMG, to the true tolerance
    table = re.findall(r"^(checkerboard|anisotropic)\s+(\w+)\s+(\d+)\s+(\S+)\s+(yes|NO)", out, flags=re.M)
    assert {(k, m) for k, m, *_ in table} == {(k, m) for k in ("checkerboard", "anisotropic")
                                              for m in ("neural_mg", "neural_mg_rediscretised", "dcdm", "gamg")}
    assert all(ok == "yes" for *_, ok in table)
    assert "hypre" in out
    # a rerun reuses a checkpoint trained with the same configuration, and retrains on a changed one
    quick = {**bench_pc.NEURAL_MG_CONFIG, "train": {**bench_pc.NEURAL_MG_CONFIG["train"], "steps": 20}}
    before = (tmp_path / "neural_mg_quick.pt").stat().st_mtime_ns
    bench_pc.train_cached(quick, tmp_path, "neural_mg_quick", retrain=False)
    assert "neural_mg_quick: cached" in capsys.readouterr().out
    assert (tmp_path / "neural_mg_quick.pt").stat().st_mtime_ns == before


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
