"""Finding and building problems by name: the family registry and ``module:Class`` paths.

Data generation (:mod:`fe_operators.data`), rebuilding a problem from a dataset file
(:meth:`fe_operators.data.FEFile.rebuild_problem`) and evaluation all go through
:func:`load_problem`, which checks the parameters against the constructor's signature
before building anything, so that a bad value is reported by name and expected type
(``length_scale: expected a number (float), got 'abc'``) rather than by a traceback
from deep inside the constructor.

Steady families (:class:`~fe_operators.problems.base.Problem`) and time-dependent ones
(:class:`~fe_operators.problems.timedep.TimeDependentProblem`) share the registry: both
register with :func:`register_problem`, are named the same way and are rebuilt from a
file's description the same way; :func:`is_time_dependent` tells them apart.

A name the user gives (``fe-operators generate my_problems:Mine``) is imported as given.
A name read from a file is data: :func:`stored_problem_class` builds a registered family
from :data:`FAMILIES`, and imports a ``module:Class`` only when the user named the same
problem (``--problem my_problems:Mine`` on the command line, ``problem=`` in Python, or
:func:`user_problem` around code that rebuilds problems from files).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Union

from fe_operators.errors import ConfigError, DatasetFileError, UsageError
from fe_operators.problems.base import Problem
from fe_operators.problems.timedep import TimeDependentProblem
from fe_operators.quoting import clip, short

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

__all__ = ["FAMILIES", "FAMILY_BASES", "check_params", "get_problem", "is_time_dependent", "load_problem",
           "problem_class", "problem_reference", "register_problem", "resolve_problem", "stored_problem_class",
           "user_problem"]

#: the classes a family can be: steady or time-dependent
FAMILY_BASES: tuple[type, ...] = (Problem, TimeDependentProblem)

#: a problem as a user names it: a family name, ``"module:Class"``, or the class itself
ProblemChoice = Union[str, "type[Problem]", "type[TimeDependentProblem]"]

#: family name -> its class's "module:Class", filled by :func:`register_problem` (the six
#: families of this package register when :mod:`fe_operators.problems` is imported)
FAMILIES: dict[str, str] = {}

#: family name -> its class
_CLASSES: dict[str, type[Problem] | type[TimeDependentProblem]] = {}

_P = TypeVar("_P", bound="type[Problem] | type[TimeDependentProblem]")


def _is_family_class(cls: Any) -> bool:
    """Whether ``cls`` is a Problem or TimeDependentProblem subclass."""
    return isinstance(cls, type) and issubclass(cls, FAMILY_BASES)


def is_time_dependent(problem: Any) -> bool:
    """Whether a problem (class or instance) is a :class:`TimeDependentProblem`."""
    cls = problem if isinstance(problem, type) else type(problem)
    return issubclass(cls, TimeDependentProblem)


def register_problem(name: str) -> Callable[[_P], _P]:
    """Class decorator: register a Problem or TimeDependentProblem subclass as the family ``name``.

    The family is then known by name everywhere a family is (``fe-operators generate
    NAME``, :func:`get_problem`, :func:`load_problem`), and a dataset that records it is
    rebuilt without ``--problem`` (:func:`stored_problem_class`).  The decorator sets the
    class's :attr:`~fe_operators.problems.base.Problem.name`.

    Examples
    --------
    >>> @register_problem("reaction")                        # doctest: +SKIP
    ... class ReactionProblem(Problem):
    ...     ...

    A time-dependent family registers the same way, and is then generated as
    trajectories (``fe-operators generate heat --steps 100 ...``):

    >>> @register_problem("heat")                            # doctest: +SKIP
    ... class HeatEquation(TimeDependentProblem):
    ...     ...

    Raises
    ------
    ValueError
        ``name`` is empty or holds a ``:`` (the mark of a ``module:Class`` path), or is
        the name of another registered class.
    TypeError
        The decorated object is not a Problem or TimeDependentProblem subclass.
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise ValueError(f"expected a family name without ':' (e.g. 'darcy'), got {short(name)}")

    def register(cls: _P) -> _P:
        if not _is_family_class(cls):
            raise TypeError(f"@register_problem({name!r}) decorates Problem or TimeDependentProblem subclasses, "
                            f"got {short(cls)}")
        ref = problem_reference(cls)
        if FAMILIES.get(name, ref) != ref:
            raise ValueError(f"problem family {name!r} is registered already, by {FAMILIES[name]}; choose "
                             "another name")
        cls.name = name
        FAMILIES[name] = ref
        _CLASSES[name] = cls
        return cls

    return register


def problem_class(name: str) -> type[Problem] | type[TimeDependentProblem]:
    """The Problem (or TimeDependentProblem) subclass of family ``name``.

    Raises
    ------
    ValueError
        Unknown family (the message lists the known ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(sorted(FAMILIES))}")
    return _CLASSES[name]


def get_problem(name: str, mesh: fd.MeshGeometry, **params: Any) -> Problem | TimeDependentProblem:
    """Build the problem family ``name`` on ``mesh`` with family parameters ``params``."""
    return problem_class(name)(mesh, **params)


def resolve_problem(name: ProblemChoice) -> type[Problem] | type[TimeDependentProblem]:
    """The Problem (or TimeDependentProblem) class of a registry name (``"darcy"``) or an import path (``"pkg.mod:Class"``).

    Only for names a user gives: an import path is imported.  A name read from a file
    goes through :func:`stored_problem_class`.  A class is returned as it is (checked).

    Raises
    ------
    ValueError
        Unknown family, or an import path (or class) that does not name a Problem or
        TimeDependentProblem subclass.
    """
    if isinstance(name, type):
        if not _is_family_class(name):
            raise ValueError(f"expected a Problem or TimeDependentProblem subclass, got {name!r}")
        return name
    if ":" in name and name not in FAMILIES:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import problem class {name!r}: {exc}") from exc
        if not _is_family_class(cls):
            raise ValueError(f"expected {name!r} to name a Problem or TimeDependentProblem subclass, got {cls!r}")
        return cls
    return problem_class(name)


def problem_reference(problem: ProblemChoice) -> str:
    """The ``"module:Class"`` a problem choice stands for (a family's is its entry in :data:`FAMILIES`).

    ``problem_reference("darcy") == problem_reference(DarcyProblem) ==
    "fe_operators.problems.darcy:DarcyProblem"``; any other string is returned as given.
    """
    if isinstance(problem, type):
        return f"{problem.__module__}:{problem.__qualname__}"
    return FAMILIES.get(problem, problem)



#: the problem the user named for code that rebuilds problems from files (see user_problem)
_USER_PROBLEM: contextvars.ContextVar[ProblemChoice | None] = contextvars.ContextVar(
    "fe_operators_user_problem", default=None)


@contextlib.contextmanager
def user_problem(problem: ProblemChoice | None) -> Iterator[None]:
    """Within the block, problems rebuilt from files may be ``problem`` (what the user named).

    How ``fe-operators train --problem`` reaches the model builders that call
    :meth:`~fe_operators.data.FEFile.rebuild_problem` without a ``problem`` argument.

    Examples
    --------
    >>> with user_problem("my_problems:Mine"):          # doctest: +SKIP
    ...     run_training(cfg)
    """
    token = _USER_PROBLEM.set(problem)
    try:
        yield
    finally:
        _USER_PROBLEM.reset(token)


def stored_problem_class(stored: Any, given: ProblemChoice | None = None, *,
                         source: str = "the file") -> type[Problem] | type[TimeDependentProblem]:
    """The Problem class of a problem name read from a file, imported only if the user named it.

    A registered family (its name, or its ``module:Class`` in :data:`FAMILIES`) is built
    from the registry.  Any other ``module:Class`` is code a file names: it is imported
    only when ``given`` (the user's own choice) is that same path or a class whose
    ``module:qualname`` is it.  Whenever ``given`` is passed it must match the stored name.

    Parameters
    ----------
    stored
        The name the file holds (a dataset's ``provenance["problem"]``).
    given
        The problem the user named (``--problem``, ``problem=``); ``None``: the one set
        with :func:`user_problem`, if any.
    source
        The file, for messages (e.g. ``"the dataset d.h5"``).

    Raises
    ------
    DatasetFileError
        The stored name is not a string, not a known family, or a ``module:Class`` the
        user did not name (the message says how to name it).
    UsageError
        ``given`` differs from the stored name (the message names both).
    ValueError
        ``given`` cannot be imported or is not a Problem subclass.
    """
    given = _USER_PROBLEM.get() if given is None else given
    if not isinstance(stored, str) or not stored.strip():
        raise DatasetFileError(f"{source} records no problem name (its provenance 'problem' is {short(stored)})")
    ref = problem_reference(stored)
    if given is not None:
        if not isinstance(given, (str, type)):
            raise UsageError(f"--problem: expected 'module:Class' or a Problem subclass, got {short(given)}")
        if problem_reference(given) != ref:
            shown = clip(given if isinstance(given, str) else problem_reference(given))
            if ref in FAMILIES.values():
                raise UsageError(f"--problem {shown} does not match {source}, generated by the registered family "
                                 f"{short(stored)}: leave out --problem (it is needed only for your own problem "
                                 "classes), or pass the dataset of your problem")
            raise UsageError(
                f"--problem {shown} does not match {source}, generated by the problem class {short(stored)}: "
                f"pass --problem {clip(stored)} (problem={short(stored)} in Python) if you trust that module, "
                "or pass the dataset of your problem")
        if isinstance(given, type):
            return resolve_problem(given)
    if ref in FAMILIES.values():  # a registered family: the registry holds its class
        return next(_CLASSES[name] for name, known in FAMILIES.items() if known == ref)
    if ":" not in stored:
        raise DatasetFileError(f"{source} was generated by an unknown problem {short(stored)}; known problems: "
                               f"{', '.join(sorted(FAMILIES))}")
    if given is None:
        raise DatasetFileError(
            f"{source} was generated by the problem class {short(stored)}, which is not a registered family; "
            "fe_operators never imports code a file names: if you trust that module, name it yourself with "
            f"--problem {clip(stored)} on the command line (problem={short(stored)} in Python)")
    return resolve_problem(given)


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


def check_params(cls: type[Problem] | type[TimeDependentProblem], params: Mapping[str, Any], name: str | None = None) -> None:
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


def load_problem(name: ProblemChoice, mesh: str, params: Mapping[str, Any],
                 comm: Any = None) -> Problem | TimeDependentProblem:
    """Build problem ``name`` with ``params`` on the mesh ``mesh`` (a spec for ``load_mesh``).

    Parameters
    ----------
    name
        Registry name, ``"module:Class"`` (imported: a name the user gave, see
        :func:`stored_problem_class` for names read from files) or a Problem subclass.
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
    name = name if isinstance(name, str) else cls.__name__
    check_params(cls, params, name)
    mesh_obj = load_mesh(mesh, comm=MPI.COMM_SELF if comm is None else comm)
    try:
        return cls(mesh_obj, **dict(params))
    except TypeError as exc:
        raise ValueError(f"invalid parameters {dict(params)} for problem {name!r}: {exc}") from exc
