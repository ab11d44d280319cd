"""The README's user-defined problem example runs as shown, and means what it says."""

import pathlib
import re
import subprocess
import sys

import numpy as np

from fe_operators.parallel import mpiexec_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith("# my_problems.py")]
    return block


def test_readme_user_problem(tmp_path):
    (tmp_path / "my_problems.py").write_text(_example())
    exe = pathlib.Path(sys.executable).parent / "fe-operators"
    env = dict(mpiexec_env(), PYTHONPATH=str(tmp_path))
    cmd = [str(exe), "generate", "my_problems:ReactionDiffusion", "--mesh", "lshape",
           "--samples", "4", "--out", "rd.h5", "--c", "5.0", "--quiet"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

    sys.path.insert(0, str(tmp_path))
    try:
        import my_problems
        from fe_operators.data import FEFile
        from fe_operators.io import load_mesh

        problem = my_problems.ReactionDiffusion(load_mesh("lshape"), c=5.0)
        inputs, u = problem.sample(seed=0, index=3)
        stored_in, stored_out = FEFile(tmp_path / "rd.h5").read([3])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_problems", None)
    assert np.allclose(stored_in["f"][0], inputs["f"].dat.data_ro, rtol=0, atol=1e-12)
    assert np.allclose(stored_out[0], u.dat.data_ro, rtol=0, atol=1e-12)
    assert np.abs(u.dat.data_ro).max() > 1e-3  # a real solution, not zeros
