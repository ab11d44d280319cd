"""The installed package is this clone's code, and the console script works."""

import pathlib
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
