#!/usr/bin/env bash
# Install everything fe_operators needs: system packages, PETSc (built once into a
# versioned cache outside the clone), a shared Python virtual environment with Firedrake,
# torch and friends, and this clone's own light environment <clone>/.venv layered on the
# shared one, with fe_operators installed editable from this clone (scripts/install_clone.sh).
#
# Idempotent: each step checks whether its result is already there and skips itself.
#
# Environment knobs
#   FE_OPERATORS_CACHE  cache folder for PETSc and the default shared venv
#                       (default: ${XDG_CACHE_HOME:-$HOME/.cache}/fe_operators)
#   VIRTUAL_ENV         an active venv is used as the shared one (its torch is kept);
#                       an activated clone's .venv stands for the venv it is layered on
#   PYTHON              interpreter used to create the venv (default: python3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

PETSC_VERSION=3.26.0
PETSC4PY_VERSION=3.26.0
FIREDRAKE_VERSION=2026.10.0
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}
CACHE=${FE_OPERATORS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fe_operators}
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[install] %s\n' "$*"; }
t0=$SECONDS

# --------------------------------------------------------------------------- 1. apt
APT_PACKAGES=(
  bison build-essential cmake flex gfortran ninja-build pkg-config zlib1g-dev
  libhdf5-mpi-dev libhwloc-dev libmumps-ptscotch-dev libmetis-dev libopenblas-dev
  libopenmpi-dev openmpi-bin libptscotch-dev libscalapack-openmpi-dev libsuitesparse-dev
  python3-dev python3-venv
  # shared libraries the gmsh wheel loads
  libglu1-mesa libxcursor1 libxft2 libxinerama1 libxrender1 libxfixes3 libgl1 libfontconfig1
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "fe_operators needs these Debian/Ubuntu packages; run as root:" >&2
    echo "  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  log "apt: all ${#APT_PACKAGES[@]} packages present"
fi

# --------------------------------------------------------------------------- 2. PETSc
MULTIARCH=$(gcc -print-multiarch)
HDF5_INC=/usr/include/hdf5/openmpi
HDF5_LIBDIR=/usr/lib/$MULTIARCH/hdf5/openmpi
PETSC_ARCH=arch-fe-opt
PETSC_OPTIONS=(
  --with-c2html=0 --with-debugging=0 --with-fortran-bindings=0 --with-shared-libraries=1
  --with-strict-petscerrorcode --with-x=0
  --COPTFLAGS=-O2 --CXXOPTFLAGS=-O2 --FOPTFLAGS=-O2
  --with-hdf5-include=$HDF5_INC
  "--with-hdf5-lib=[$HDF5_LIBDIR/libhdf5.so,$HDF5_LIBDIR/libhdf5_hl.so]"
  --with-metis --with-ptscotch
  "--with-ptscotch-lib=-lptesmumps -lptscotch -lptscotcherr -lesmumps -lscotch -lscotcherr"
  --with-ptscotch-include=/usr/include/scotch
  --with-mumps --with-scalapack-lib=-lscalapack-openmpi
  --with-suitesparse --with-zlib --with-hwloc --with-bison
)
opt_hash=$(printf '%s\n' "$PETSC_VERSION" "${PETSC_OPTIONS[@]}" | sha256sum | cut -c1-10)
PETSC_DIR=$CACHE/petsc-$PETSC_VERSION-$opt_hash
export PETSC_DIR PETSC_ARCH
mkdir -p "$CACHE"
stamp=$PETSC_DIR/$PETSC_ARCH/.fe_operators_built
if [ -f "$stamp" ]; then
  log "PETSc $PETSC_VERSION: cached at $PETSC_DIR"
else
  (
    flock 9
    if [ ! -f "$stamp" ]; then
      log "PETSc $PETSC_VERSION: building into $PETSC_DIR (about 5 minutes)"
      tmp=$(mktemp -d "$CACHE/petsc-src.XXXXXX")
      "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "petsc==$PETSC_VERSION"
      rm -rf "$PETSC_DIR"
      mkdir -p "$PETSC_DIR"
      tar -xzf "$tmp/petsc-$PETSC_VERSION.tar.gz" -C "$PETSC_DIR" --strip-components=1
      rm -rf "$tmp"
      cd "$PETSC_DIR"
      ./configure PETSC_ARCH=$PETSC_ARCH "${PETSC_OPTIONS[@]}" > "$CACHE/petsc-configure.log" 2>&1 \
        || { tail -n 40 "$CACHE/petsc-configure.log"; exit 1; }
      make PETSC_DIR="$PETSC_DIR" PETSC_ARCH=$PETSC_ARCH all > "$CACHE/petsc-make.log" 2>&1 \
        || { tail -n 40 "$CACHE/petsc-make.log"; exit 1; }
      printf '%s\n' "${PETSC_OPTIONS[@]}" > "$stamp"
    fi
  ) 9>"$CACHE/.petsc.lock"
fi

# --------------------------------------------------------------------------- 3. venv
keep_torch=0
active=${VIRTUAL_ENV:-}
if [ -n "$active" ] && [ -f "$active/fe_operators-layer" ]; then
  # an activated clone's .venv (scripts/install_clone.sh): the venv under it is meant
  active=$(head -n 1 "$active/fe_operators-layer")
  if [[ $active == "$CACHE"/venv-* ]]; then active=""; fi
fi
if [ -n "$active" ]; then
  VENV=$active
  keep_torch=1
  log "venv: using the active one at $VENV"
else
  pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  VENV=$CACHE/venv-py$pyver-firedrake$FIREDRAKE_VERSION-petsc$opt_hash
  if [ ! -x "$VENV/bin/python" ]; then
    log "venv: creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -U pip
  else
    log "venv: $VENV"
  fi
fi
PY=$VENV/bin/python
# pip's config here points at local indexes that may be absent; drop its warnings about them
pipi() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
# has MODULE [VERSION]: is MODULE importable (at VERSION)?
has() {
  "$PY" - "$@" <<'PYEOF' >/dev/null 2>&1
import importlib, sys
m = importlib.import_module(sys.argv[1])
if len(sys.argv) > 2 and getattr(m, "__version__", "") != sys.argv[2]:
    sys.exit(1)
PYEOF
}

# has_all MODULE...: are all importable? (one interpreter for all: each start costs)
has_all() {
  "$PY" - "$@" <<'PYEOF' >/dev/null 2>&1
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
PYEOF
}

export CC=mpicc CXX=mpicxx HDF5_MPI=ON

if ! has_all mpi4py Cython pkgconfig hatchling rtree; then
  log "pip: build prerequisites"
  pipi --only-binary mpi4py mpi4py numpy "Cython>=3.0" pkgconfig pybind11 \
    "setuptools>=77.0.3" wheel rtree firedrake-rtree libsupermesh petsctools hatchling
fi

petsc4py_ok=0
if has petsc4py "$PETSC4PY_VERSION"; then
  # (resolved: a cache reached through a link is the same PETSc)
  got=$("$PY" -c 'import os, petsc4py; print(os.path.realpath(petsc4py.get_config()["PETSC_DIR"]))' 2>/dev/null || true)
  [ "$got" = "$(cd "$PETSC_DIR" && pwd -P)" ] && petsc4py_ok=1
fi
if [ $petsc4py_ok = 0 ]; then
  log "pip: petsc4py $PETSC4PY_VERSION against $PETSC_DIR (about 5 minutes uncached)"
  pipi --no-build-isolation --force-reinstall --no-deps "petsc4py==$PETSC4PY_VERSION"
fi

if ! "$PY" -c 'import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)' >/dev/null 2>&1; then
  log "pip: h5py with MPI (about 3 minutes uncached)"
  HDF5_INCLUDEDIR=$HDF5_INC HDF5_LIBDIR=$HDF5_LIBDIR \
    pipi --no-build-isolation --no-binary h5py --force-reinstall --no-deps h5py
  pipi h5py  # its own (pure) dependencies
fi

if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('firedrake') != '$FIREDRAKE_VERSION')" >/dev/null 2>&1; then
  log "pip: firedrake $FIREDRAKE_VERSION (about 2 minutes uncached)"
  pipi --no-build-isolation "firedrake==$FIREDRAKE_VERSION"
fi

# (the pinned torch is checked by its metadata: importing torch takes seconds)
if [ $keep_torch = 1 ] && has torch; then
  log "pip: keeping the venv's torch ($("$PY" -c 'import torch; print(torch.__version__)'))"
elif ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(not m.version('torch').startswith('$TORCH_VERSION'))" >/dev/null 2>&1; then
  log "pip: torch $TORCH_VERSION"
  pipi "torch==$TORCH_VERSION"
fi

RUNTIME=(numba meshio scipy tqdm matplotlib yaml gmsh pytest)
if ! has_all "${RUNTIME[@]}"; then
  log "pip: numba meshio scipy tqdm matplotlib PyYAML gmsh pytest"
  pipi numba meshio scipy tqdm matplotlib PyYAML gmsh pytest
fi

# The former layout installed fe_operators editable into the shared venv, pointing at
# whichever clone ran last: take it out (the clones' own .venv hold their fe_operators).
if [ "$VENV" != "$here/.venv" ] && compgen -G "$VENV/lib/python*/site-packages/__editable__*fe_operators*" >/dev/null; then
  log "pip: removing the editable fe_operators from the shared venv (each clone has its own now)"
  "$PY" -m pip uninstall -y -q fe_operators
fi

# --------------------------------------------------------------------------- 4. this clone
# <clone>/.venv: a light venv layered on $VENV, with this clone's fe_operators (editable)
bash "$here/scripts/install_clone.sh" "$VENV"
log "done in $((SECONDS - t0)) s; interpreter: $here/.venv/bin/python"
