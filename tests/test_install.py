"""The installed package is this clone's code, and the console script works; two clones
on one machine each import their own code."""

import os
import pathlib
import shutil
import subprocess
import sys

import fe_operators

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_imported_package_is_this_clone():
    assert pathlib.Path(fe_operators.__file__).resolve().parent == ROOT / "fe_operators"


def test_imported_package_is_this_clone_in_fresh_process(tmp_path):
    # From another directory, so that the editable install (not the cwd) decides.
    out = subprocess.run(
        [sys.executable, "-c", "import fe_operators; print(fe_operators.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    assert pathlib.Path(out.stdout.strip()).resolve().parent == ROOT / "fe_operators"


def test_version_and_console_script():
    exe = pathlib.Path(sys.executable).parent / "fe-operators"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"fe_operators {fe_operators.__version__}"


def test_doctor_passes():
    exe = pathlib.Path(sys.executable).parent / "fe-operators"
    out = subprocess.run([str(exe), "doctor"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS") == 3 and "FAIL" not in out.stdout
    assert "MUMPS".lower() in out.stdout and "h5py" in out.stdout


# ---------------------------------------------------------------- two clones on one machine
def _base_venv() -> pathlib.Path:
    """The venv holding the stack under this interpreter: the layer's base, or the venv itself."""
    record = pathlib.Path(sys.prefix) / "fe_operators-layer"
    return pathlib.Path(record.read_text().splitlines()[0]) if record.is_file() else pathlib.Path(sys.prefix)


def _clone(dest: pathlib.Path) -> pathlib.Path:
    """``git clone`` of this repository, then this working tree's files over it (uncommitted
    changes included), so that the test runs the install script as it is now."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, capture_output=True)
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _install_clone(clone: pathlib.Path, env: dict[str, str]) -> str:
    """The per-clone step of ``make install`` (scripts/install.sh step 4), as the clone has it."""
    out = subprocess.run(["bash", str(clone / "scripts" / "install_clone.sh"), str(_base_venv())],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _imports(clone: pathlib.Path, env: dict[str, str], tmp_path: pathlib.Path) -> pathlib.Path:
    out = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                          "import fe_operators; print(fe_operators.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    return pathlib.Path(out.stdout.strip()).resolve().parent


def test_two_clones_each_import_their_own_package(tmp_path):
    # no PYTHONPATH: it would decide the import for every clone
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    a, b = _clone(tmp_path / "a"), _clone(tmp_path / "b")
    # clone a comes from the former layout: .venv linked to the shared venv (here a decoy,
    # which must survive: the link is replaced, never followed)
    decoy = tmp_path / "shared"
    (decoy / "bin").mkdir(parents=True)
    (decoy / "bin" / "keep").write_text("")
    (a / ".venv").symlink_to(decoy)
    for first, second in ((a, b), (b, a)):
        for clone in (first, second):
            if not (clone / ".venv").is_symlink():
                shutil.rmtree(clone / ".venv", ignore_errors=True)
        for clone in (first, second):
            assert "creating" in _install_clone(clone, env)
        for clone in (a, b):
            assert _imports(clone, env, tmp_path) == clone.resolve() / "fe_operators"
            out = subprocess.run([str(clone / ".venv" / "bin" / "fe-operators"), "--version"], env=env,
                                 capture_output=True, text=True, check=True)
            assert out.stdout.strip() == f"fe_operators {fe_operators.__version__}"
    assert (decoy / "bin" / "keep").exists()
    assert not (a / ".venv").is_symlink()
    # a second run is a no-op; Firedrake's kernel caches are the base's, shared by the clones
    assert "is current" in _install_clone(a, env)
    # (firedrake.configuration derives the PyOP2, TSFC and loopy caches from FIREDRAKE_CACHE_DIR)
    env_cache = {k: v for k, v in env.items() if k != "FIREDRAKE_CACHE_DIR"}
    for clone in (a, b):
        out = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                              "import os; print(os.environ['FIREDRAKE_CACHE_DIR'])"], env=env_cache,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(_base_venv().resolve() / ".cache")
    # git sees nothing new in a clone: .venv (and the build's by-products) are ignored
    status = subprocess.run(["git", "-C", str(a), "status", "--porcelain", "--ignored=no"], capture_output=True,
                            text=True, check=True).stdout
    assert ".venv" not in status and "egg-info" not in status
