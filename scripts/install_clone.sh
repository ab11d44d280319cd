#!/usr/bin/env bash
# This clone's own environment, <clone>/.venv: a light virtual environment layered on a
# base environment that holds the heavy stack (Firedrake, PETSc, torch, ...), with this
# clone's fe_operators installed editable in it. Several clones on one machine share the
# base and each imports its own code.
#
#   bash scripts/install_clone.sh BASE_VENV
#
# Step 4 of scripts/install.sh; runs on its own too (the tests do). It never changes the
# base. The layer is a plain venv of the base's interpreter whose site-packages holds
#   zz_fe_operators_base.pth   adds the base's site-packages after the layer's own (so
#                              this clone's fe_operators wins over any other install),
#                              and sets FIREDRAKE_CACHE_DIR (unless set) to the base's
#                              .cache, where Firedrake keeps its compiled kernels (PyOP2,
#                              TSFC, loopy) for the base itself: all clones share them;
#   __editable__.fe_operators  this clone's package (pip install -e), and .venv/bin holds
#                              the fe-operators script, plus copies of the base's console
#                              scripts (pytest, pip, ...) that run the layer's interpreter.
# .venv/fe_operators-layer records base and clone. Idempotent: when the layer is current
# and imports this clone's package, nothing is done (a fraction of a second).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1/bin/python" ]; then
  echo "usage: $0 BASE_VENV  (a virtual environment with Firedrake, e.g. from scripts/install.sh)" >&2
  exit 2
fi
base=$(cd "$1" && pwd -P)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$here/.venv
record=$venv/fe_operators-layer
mine=$(cd "$here" && pwd -P)/fe_operators/__init__.py
log() { printf '[install] %s\n' "$*"; }
# another clone on PYTHONPATH would answer for this one (and its egg-info fool pip)
unset PYTHONPATH

# where the interpreter $1 imports fe_operators from (resolved; empty if it does not).
# Run from / so that no package in the current directory answers.
imported() {
  (cd / && "$1" -c 'import os, fe_operators; print(os.path.realpath(fe_operators.__file__))' 2>/dev/null) || true
}
# a stamp of what the layer depends on (package metadata, this script): a changed one redoes it
stamp() { cat "$here/setup.cfg" "$here/pyproject.toml" "$here/scripts/install_clone.sh" | sha256sum | cut -c1-16; }
want_layer=$(printf '%s\n%s\n%s\n' "$base" "$here" "$(stamp)")

# The base is this clone's .venv itself (an activated full venv living there): no layer,
# the package goes straight into it.
if [ ! -L "$venv" ] && [ ! -f "$record" ] && [ "$base" = "$(cd "$venv" 2>/dev/null && pwd -P)" ]; then
  if [ "$(imported "$venv/bin/python")" != "$mine" ]; then
    log "pip: fe_operators (editable) -> $venv"
    "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps -e "$here" > "$venv/editable-install.log" 2>&1 \
      || { cat "$venv/editable-install.log"; exit 1; }
  fi
  exit 0
fi

# Fast path: the layer is there, of this base and clone, and imports this clone's package.
if [ -f "$record" ] && [ "$(cat "$record")" = "$want_layer" ] && [ -x "$venv/bin/fe-operators" ] \
   && [ "$(imported "$venv/bin/python")" = "$mine" ]; then
  log "clone: $venv is current (layer on $base)"
  exit 0
fi

if [ -L "$venv" ]; then
  rm -f "$venv"  # the former layout: a link to the shared environment
elif [ -e "$venv" ] && [ ! -f "$record" ]; then
  echo "$venv exists and is not an fe_operators layer; move it away (or activate it to install into it)" >&2
  exit 1
fi
if [ -f "$record" ] && [ "$(head -n 2 "$record")" != "$(printf '%s\n%s' "$base" "$here")" ]; then
  log "clone: $venv was layered on $(head -n 1 "$record") (clone $(sed -n 2p "$record")): recreating it"
  rm -rf "$venv"
fi
if [ ! -f "$venv/pyvenv.cfg" ]; then
  log "clone: creating $venv, layered on $base"
  "$base/bin/python" -m venv --without-pip "$venv"
fi

# The layering .pth, written by the base's interpreter so that paths are quoted right.
# The base's site-packages come after the layer's on sys.path, so the layer's modules win
# (an editable fe_operators left in the base included: its .pth imports the finder module
# of the same name from the layer); "zz" runs it after pip's own .pth files.
"$base/bin/python" - "$venv" <<'PYEOF'
import os, site, sys, sysconfig

venv = sys.argv[1]
base = sys.prefix
purelib = sysconfig.get_paths(vars={"base": venv, "platbase": venv})["purelib"]
# Firedrake keeps its caches (PyOP2, TSFC, loopy) in sys.prefix/.cache unless told otherwise
lines = [f"os.environ.setdefault('FIREDRAKE_CACHE_DIR', {os.path.join(base, '.cache')!r})"]
lines += [f"site.addsitedir({p!r})" for p in site.getsitepackages()]
with open(os.path.join(purelib, "zz_fe_operators_base.pth"), "w") as f:
    f.write("# fe_operators: this venv is a layer on " + base + " (scripts/install_clone.sh)\n")
    f.write("import os, site; " + "; ".join(lines) + "\n")
PYEOF

log "pip: fe_operators (editable) -> $here, into $venv"
# (setuptools' editable build is chatty; keep its output unless it fails)
"$venv/bin/python" -m pip install -q --no-build-isolation --no-deps -e "$here" > "$venv/editable-install.log" 2>&1 \
  || { cat "$venv/editable-install.log"; exit 1; }

# The base's console scripts (pytest, pip, firedrake-*, ...), run by the layer's
# interpreter; other executables of the base are linked.
for script in "$base"/bin/*; do
  name=${script##*/}
  [ -f "$script" ] && [ ! -e "$venv/bin/$name" ] || continue
  if head -n 2 "$script" | grep -qF "$base/bin/python"; then
    sed "1,2s|$base/bin/python[0-9.]*|$venv/bin/python|" "$script" > "$venv/bin/$name"
    chmod +x "$venv/bin/$name"
  elif [ -x "$script" ]; then
    ln -s "$script" "$venv/bin/$name"
  fi
done

got=$(imported "$venv/bin/python")
if [ "$got" != "$mine" ]; then
  echo "$venv/bin/python imports fe_operators from '${got:-nowhere}', expected $here/fe_operators" >&2
  exit 1
fi
printf '%s\n' "$want_layer" > "$record"
