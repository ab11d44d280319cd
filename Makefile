# fe_operators — the two commands of the README, plus install and benchmarks.
# `make install` is idempotent: each step checks for its result and skips itself.
SHELL := /bin/bash
PY    := .venv/bin/python

# Firedrake wants single-threaded OpenMP; Open MPI refuses root without these.
export OMP_NUM_THREADS ?= 1
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export MPLBACKEND ?= Agg

.PHONY: install demo demo-rollout test test-all bench-bridge bench-data bench-spon bench-mgno bench-pc bench-dynamics

install:
	@bash scripts/install.sh

demo: install
	.venv/bin/fe-operators doctor
	$(PY) demos/main_job.py

# About two minutes on 2 cores: cylinder trajectories -> rollout SPON -> per-step errors, errors.png, rollout.pvd (out/cylinder_rollout).
demo-rollout: install
	$(PY) demos/cylinder_rollout.py

test: install
	$(PY) -m pytest tests

test-all: install
	$(PY) -m pytest tests -m ""

bench-bridge: install
	$(PY) benchmarks/bench_bridge.py

bench-data: install
	$(PY) benchmarks/bench_data.py

# Installs neuraloperator (optional, benchmark only) into the venv with torch pinned.
bench-spon: install
	$(PY) benchmarks/bench_spon.py

# About 2 hours on 2 cores (nine models x 10 min, data, solves); shares bench-spon's unitsquare:64 data (out/bench/spon), caches the rest in out/bench/mgno. One stage: $(PY) benchmarks/bench_mgno.py --stage darcy64|geom|transfer|infer; a smoke run: --smoke.
bench-mgno: install
	$(PY) benchmarks/bench_mgno.py

# Planned at most 30 minutes on 2 cores (checkpoints cached in out/bench/pc): learned preconditioners against GAMG, GMG and ICC at 66k-4.2M DOFs, DCDM, elasticity, CG2, mpiexec -n 2. Some sections: $(PY) benchmarks/bench_pc.py --section sizes,large,...; a check of every section: --quick.
bench-pc: install
	$(PY) benchmarks/bench_pc.py

# Planned about 55 minutes on 2 cores (cylinder data cached in out/bench/dynamics; MGN and the rollout SPON 10 min each; the beam SPON 6 min). One stage: $(PY) benchmarks/bench_dynamics.py --stage fe_step|mgn|spon|beam; a smoke run: --smoke.
bench-dynamics: install
	$(PY) benchmarks/bench_dynamics.py
