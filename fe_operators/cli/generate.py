"""``fe-operators generate PROBLEM --mesh MESH --samples N --out FILE``: generate a dataset.

Each sample ``i`` is drawn with ``numpy.random.default_rng([seed, i])`` and solved by the
problem's own solver, which keeps its assembled structures and PETSc objects between
samples.  The result is one HDF5 file (layout in :mod:`fe_operators.data.h5`); the run
itself is :func:`~fe_operators.data.generation.generate_dataset` (resuming, ensemble
parallelism and failures are described there).

Problem options are taken from the command line: ``--param KEY=VALUE`` or any other
``--KEY VALUE`` (dashes become underscores, values are parsed as JSON when they can be),
and checked against the problem's parameters before any mesh is read.  Errors and exit
statuses are the runner's (:mod:`fe_operators.cli.runner`): an invalid problem option is
a configuration error (exit 2) named as typed, ``problem option --KEY: ...``.

Time-dependent families (``navier_stokes``) generate trajectories
(:mod:`fe_operators.data.trajectories`): ``--steps N`` (steps after the spin-up),
``--store-every M`` (default 1) and ``--spinup S`` (default 0); the time step is the
family's option ``--dt``.  The same settings can come from a YAML file, ``--config
FILE`` (options on the command line win)::

    problem: navier_stokes
    mesh: dfg_r0.5.msh          # relative paths: to the file's folder
    samples: 8
    out: ns.h5
    seed: 0
    params:                     # family parameters
      dt: 0.0025
      reynolds_range: [80, 200]
    time:                       # time-dependent families only
      n_steps: 400
      store_every: 2
      spinup_steps: 1200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fe_operators.cli.runner import command, print_rank0
from fe_operators.configfile import read_yaml_file
from fe_operators.data.generation import generate_dataset
from fe_operators.errors import ConfigError, UsageError
from fe_operators.petsc_argv import import_firedrake

__all__ = ["build_parser", "main_generate"]


_OPTIONS = {"--mesh", "-m", "--samples", "-n", "--out", "-o", "--seed", "--param", "-p",
            "--overwrite", "--quiet", "-q", "--chunk-size", "--help", "-h", "--config", "-c",
            "--steps", "--store-every", "--spinup"}

#: keys of a ``--config`` file: the command-line option each stands for
_CONFIG_KEYS = {"problem": "PROBLEM", "mesh": "--mesh", "samples": "--samples", "out": "--out", "seed": "--seed",
                "chunk_size": "--chunk-size", "params": "--KEY VALUE", "time": "--steps/--store-every/--spinup"}
#: keys of its ``time`` section -> the command-line option
_TIME_KEYS = {"n_steps": "steps", "store_every": "store_every", "spinup_steps": "spinup"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fe-operators generate``."""
    p = argparse.ArgumentParser(
        prog="fe-operators generate",
        description="Generate a dataset of FE solutions (resumable; ensemble-parallel under mpiexec).",
        epilog="Problem options: --param KEY=VALUE, or any other --KEY VALUE / --KEY=VALUE "
               "(dashes become underscores; VALUE is parsed as JSON when it can be, e.g. "
               "--coefficient lognormal --length-scale 0.2).",
        allow_abbrev=False,
    )
    p.add_argument("problem", nargs="?",
                   help="problem family (e.g. darcy, navier_stokes) or module:Class of a Problem subclass")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML file of these settings (problem, mesh, samples, out, seed, chunk_size, params, "
                        "time); options given here win")
    p.add_argument("--mesh", "-m",
                   help="mesh: shipped name (plate_holes), built-in spec (unitsquare:64) or file "
                        "path; append /rK to refine K times (plate_holes/r2)")
    p.add_argument("--samples", "-n", type=_positive_int, help="number of samples (> 0)")
    p.add_argument("--out", "-o", help="output HDF5 file")
    p.add_argument("--seed", type=_nonnegative_int, help="dataset seed (default 0)")
    p.add_argument("--steps", type=_positive_int,
                   help="time-dependent families: steps per trajectory after the spin-up (a multiple of "
                        "--store-every)")
    p.add_argument("--store-every", type=_positive_int,
                   help="time-dependent families: store every M-th state (default 1)")
    p.add_argument("--spinup", type=_nonnegative_int,
                   help="time-dependent families: steps before the first stored state (default 0)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="a problem parameter (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a file or interrupted run made with other settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.add_argument("--chunk-size", type=_positive_int,
                   help="samples per rank between journal writes (default 16; 1 for trajectories)")
    return p


def _positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _parse_value(text: str) -> Any:
    """A problem-option value: JSON when it parses (numbers, true, lists, objects), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_problem_options(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Take ``--key value`` / ``--key=value`` options unknown to the parser out of ``argv``."""
    rest: list[str] = []
    params: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.split("=", 1)[0]
        if tok == "--" or not tok.startswith("--") or name in _OPTIONS:
            rest.append(tok)
            if tok == "--":
                rest.extend(argv[i + 1:])
                break
            i += 1
            continue
        if "=" in tok:
            value = tok.split("=", 1)[1]
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            raise UsageError(f"problem option {tok} needs a value ({tok} VALUE or {tok}=VALUE)")
        params[name[2:].replace("-", "_")] = _parse_value(value)
    return rest, params


@command("generate")
def main_generate(argv: list[str]) -> int:
    """Entry point of ``fe-operators generate`` (``main_generate(argv=None)``); returns the exit status.

    0 on success, 1 on a failed run, 2 on bad arguments or problem options; errors are
    one line on stderr (:func:`fe_operators.cli.runner.run_command`).
    """
    import_firedrake()  # after the runner has hidden the arguments from PETSc
    parser = build_parser()
    try:
        rest, params = _split_problem_options(argv)
    except UsageError:
        print_rank0(parser.format_usage(), end="", file=sys.stderr)
        raise
    args = parser.parse_args(rest)
    for item in args.param:
        if "=" not in item:
            parser.error(f"--param expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip().replace("-", "_")] = _parse_value(value)
    config = _read_config(args.config) if args.config else {}
    for key in ("problem", "mesh", "samples", "out", "seed", "chunk_size"):
        if getattr(args, key) is None and key in config:
            setattr(args, key, config[key])
    missing = [opt for key, opt in (("problem", "PROBLEM"), ("mesh", "--mesh"), ("samples", "--samples"),
                                    ("out", "--out")) if getattr(args, key) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or give them in --config)")
    params = {**config.get("params", {}), **params}
    time = dict(config.get("time", {}))
    time.update({key: getattr(args, opt) for key, opt in _TIME_KEYS.items() if getattr(args, opt) is not None})
    try:
        report = generate_dataset(
            args.problem, args.mesh, args.samples, args.out, seed=args.seed or 0, params=params,
            overwrite=args.overwrite, chunk_size=args.chunk_size,
            progress=False if args.quiet else None,
            command=shlex.join(["fe-operators", "generate", *argv]),
            time=time or None,
        )
    except ConfigError as exc:
        if exc.key in params:  # name it as it was typed
            raise ConfigError(f"problem option --{exc.key}", exc.message) from exc
        if exc.key in _TIME_KEYS:  # name it where it was given: on the command line or in the file
            option = _TIME_KEYS[exc.key]
            if getattr(args, option) is not None or exc.key not in config.get("time", {}):
                raise ConfigError(f"--{option.replace('_', '-')}", exc.message) from exc
            raise ConfigError(f"time.{exc.key}", exc.message, args.config) from exc
        raise
    if not args.quiet:
        print_rank0(_summary(report))
    return 0


def _read_config(path: str) -> dict[str, Any]:
    """The settings of a ``--config`` file, checked; paths relative to its folder made absolute.

    Raises
    ------
    ConfigError
        The file cannot be read, is not a mapping, or holds an unknown key or a value of
        the wrong type (named with the file).
    """
    data = read_yaml_file(path)
    if not isinstance(data, Mapping):
        raise ConfigError("", f"expected a mapping of generation settings ({', '.join(_CONFIG_KEYS)}), got "
                              f"{type(data).__name__}", path)
    for key in data:
        if key not in _CONFIG_KEYS:
            raise ConfigError(str(key), f"unknown key; the keys are {', '.join(_CONFIG_KEYS)}", path)
    out = dict(data)
    kinds = {"problem": str, "mesh": str, "out": str, "samples": int, "seed": int, "chunk_size": int,
             "params": Mapping, "time": Mapping}
    for key, kind in kinds.items():
        if key in out and (not isinstance(out[key], kind) or isinstance(out[key], bool)):
            raise ConfigError(key, f"expected {kind.__name__.lower()}, got {type(out[key]).__name__} "
                                   f"{str(out[key])[:60]!r}", path)
    for key in ("samples", "chunk_size"):
        if key in out and out[key] <= 0:
            raise ConfigError(key, f"expected a positive integer, got {out[key]}", path)
    if "seed" in out and out["seed"] < 0:
        raise ConfigError("seed", f"expected a non-negative integer, got {out['seed']}", path)
    for key in out.get("time", {}):
        if key not in _TIME_KEYS:
            raise ConfigError(f"time.{key}", f"unknown time setting; the time settings are "
                                             f"{', '.join(_TIME_KEYS)}", path)
    base = Path(path).resolve().parent
    if "out" in out:
        out["out"] = str(base / out["out"])
    mesh = out.get("mesh")
    if mesh and not os.path.isabs(mesh) and (base / re.sub(r"/r\d+$", "", mesh)).is_file():
        out["mesh"] = str(base / mesh)  # a file next to the config (a mesh name stays a name)
    return out


def _summary(report: Any) -> str:
    """The line printed after a run (a :class:`~fe_operators.data.generation.GenerationReport`)."""
    if report.generated:
        rate = report.samples_per_second  # trajectories take seconds each: then say so
        speed = f"{rate:.1f} samples/s" if rate >= 1 else f"{report.seconds / report.generated:.2f} s per sample"
        return (f"generated {report.generated} samples in {report.seconds:.2f} s ({speed}); {report.path}: "
                f"{report.n_done}/{report.n_samples} samples")
    if report.written:  # every missing sample was in the journal (e.g. a merge stopped by a full disk)
        return (f"{report.path}: {report.n_done}/{report.n_samples} samples, merged from the journal of the "
                "interrupted run")
    return f"nothing to do: {report.path} already holds {report.n_done}/{report.n_samples} samples"
