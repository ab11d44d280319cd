"""Finding and building problems by name: the family registry and ``module:Class`` paths.

Data generation (:mod:`fe_operators.data`), rebuilding a problem from a dataset file
(:meth:`fe_operators.data.FEFile.rebuild_problem`) and evaluation all go through
:func:`load_problem`, which checks the parameters against the constructor's signature
before building anything, so that a bad value is reported by name and expected type
(``length_scale: expected a number (float), got 'abc'``) rather than by a traceback
from deep inside the constructor.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fe_operators.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

    from fe_operators.problems.base import Problem

__all__ = ["FAMILIES", "check_params", "get_problem", "load_problem", "problem_class", "resolve_problem"]

#: family name -> "module:Class" (imported on first use)
FAMILIES: dict[str, str] = {
    "poisson": "fe_operators.problems.poisson:PoissonProblem",
    "darcy": "fe_operators.problems.darcy:DarcyProblem",
    "helmholtz": "fe_operators.problems.helmholtz:HelmholtzProblem",
    "elasticity": "fe_operators.problems.elasticity:ElasticityProblem",
    "nonlinear": "fe_operators.problems.nonlinear:NonlinearDiffusionProblem",
    "stokes": "fe_operators.problems.stokes:StokesProblem",
}


def problem_class(name: str) -> type[Problem]:
    """The Problem subclass of family ``name``.

    Raises
    ------
    ValueError
        Unknown family (the message lists the known ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_problem(name: str, mesh: fd.MeshGeometry, **params: Any) -> Problem:
    """Build the problem family ``name`` on ``mesh`` with family parameters ``params``."""
    return problem_class(name)(mesh, **params)


def resolve_problem(name: str) -> type[Problem]:
    """The Problem class of a registry name (``"darcy"``) or an import path (``"pkg.mod:Class"``).

    Raises
    ------
    ValueError
        Unknown family, or an import path that does not name a Problem subclass.
    """
    from fe_operators.problems.base import Problem

    if ":" in name and name not in FAMILIES:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import problem class {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Problem)):
            raise ValueError(f"expected {name!r} to name a Problem subclass, got {cls!r}")
        return cls
    return problem_class(name)


# ---------------------------------------------------------------------------- parameters
# annotation -> (isinstance test, words for the message); bool is an int to Python, so
# numbers exclude it explicitly
_SCALARS: dict[type, tuple[Any, str]] = {
    float: (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), "a number (float)"),
    int: (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _expected(annotation: Any) -> tuple[list[Any], list[str]] | None:
    """Checks and words for an annotation made of scalars and ``None``; ``None`` if not checkable.

    ``float | None`` gives the float check and ``"null"``; an annotation with any other
    member (``Sequence[int]``, ``dict[str, Any]``) is left to the constructor.
    """
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    checks, words = [], []
    for member in members:
        if member is type(None):
            checks.append(lambda v: v is None)
            words.append("null")
        elif member in _SCALARS:
            check, word = _SCALARS[member]
            checks.append(check)
            words.append(word)
        else:
            return None
    return checks, words


def check_params(cls: type[Problem], params: Mapping[str, Any], name: str | None = None) -> None:
    """Check ``params`` against the signature of ``cls.__init__`` before building anything.

    Unknown parameter names are refused (unless the constructor takes ``**kwargs``), and
    a value whose annotation is a plain scalar (``float``, ``int``, ``bool``, ``str``,
    optionally ``| None``) must have that type.  Other annotations, and parameters
    without one, are left to the constructor.

    Parameters
    ----------
    cls
        The Problem subclass.
    params
        The parameters (e.g. from ``fe-operators generate --length_scale 0.2``).
    name
        The problem as named by the user (default ``cls.__name__``), for the message.

    Raises
    ------
    ConfigError
        An unknown parameter, or a value of the wrong type; the error's ``key`` is the
        parameter's name and the message says what was expected and what was given.
    """
    name = cls.__name__ if name is None else name
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # no introspectable signature: the constructor decides
        return
    accepted = {k: p for k, p in list(signature.parameters.items())[2:]  # skip self, mesh
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        hints = {}
    for key, value in params.items():
        if key not in accepted:
            if takes_any:
                continue
            raise ConfigError(key, f"unknown parameter of problem {name!r}; its parameters are "
                                   f"{', '.join(accepted) or 'none'}")
        expected = _expected(hints[key]) if key in hints else None
        if expected is not None and not any(check(value) for check in expected[0]):
            raise ConfigError(key, f"expected {' or '.join(expected[1])} for problem {name!r}, "
                                   f"got {type(value).__name__} {value!r}")


def load_problem(name: str, mesh: str, params: Mapping[str, Any], comm: Any = None) -> Problem:
    """Build problem ``name`` with ``params`` on the mesh ``mesh`` (a spec for ``load_mesh``).

    Parameters
    ----------
    name
        Registry name or ``"module:Class"``.
    mesh
        Mesh spec: a shipped mesh name, ``"unitsquare:64"`` or a file path, optionally
        refined (``"plate_holes/r2"``).
    params
        Family parameters, checked by :func:`check_params` before the mesh is read.
    comm
        Communicator of the mesh (default ``COMM_SELF``: one copy per process).

    Raises
    ------
    ValueError
        Unknown problem or invalid parameters (:class:`~fe_operators.errors.ConfigError`
        naming the parameter for an unknown name or a wrong type).
    fe_operators.errors.MeshReadError
        The mesh spec cannot be read.
    """
    from mpi4py import MPI

    from fe_operators.io import load_mesh

    cls = resolve_problem(name)
    check_params(cls, params, name)
    mesh_obj = load_mesh(mesh, comm=MPI.COMM_SELF if comm is None else comm)
    try:
        return cls(mesh_obj, **dict(params))
    except TypeError as exc:
        raise ValueError(f"invalid parameters {dict(params)} for problem {name!r}: {exc}") from exc
