"""The one extension point of the learned preconditioners: a kind is one class, registered once.

A *kind* is what ``fe-operators precond train`` trains (its ``kind:`` key): one network
class, the options section of its configuration, how it is trained, which PETSc
preconditioner uses the network and with which solver options, and its rows in
``fe-operators precond evaluate``.  It is one :class:`LearnedPreconditioner` subclass,
decorated with :func:`register_preconditioner`, the way a Firedrake preconditioner is one
``PCBase`` subclass::

    @register_preconditioner("toy_jacobi")
    class ToyJacobiKind(LearnedPreconditioner):
        section = "toy"                       # the configuration section of its options
        options = ToySection                  # a dataclass of option() fields
        network = "my_module:ToyNet"          # its network class (registered for checkpoints)
        what, users, model_flag = "a toy Jacobi weight", "ToyJacobiPC", "--toy-model"
        methods = {"toy_jacobi": Method("CG + the toy Jacobi", pc="my_module.ToyJacobiPC",
                                        model_option="toyjacobi_model")}

        def train(self, cfg, family, log): ...   # -> (network, history, report)

Everything generic iterates over :data:`KINDS`: the configuration schema
(:func:`fe_operators.precond.config.precond_config_class`), the training driver
(:func:`fe_operators.precond.training.train_preconditioner`), the checkpoint kind checks
(:mod:`fe_operators.precond.base`), ``precond evaluate``'s methods and the CLI's model
flags.  fe_operators' own kinds, ``neural_mg`` (:mod:`~fe_operators.precond.kind_neural_mg`:
NeuralMG, NeuralAMG, LearnedJacobi) and ``dcdm`` (:mod:`~fe_operators.precond.kind_dcdm`),
are written in the same form and registered on first use of the registry.

Solver options a kind gives are made by code (:meth:`LearnedPreconditioner.solver_parameters`),
never read from a stored file: options from files never select a Python PC type
(:mod:`fe_operators.petsc_options`).

Nothing here imports Firedrake or torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from typing import Any, Callable, ClassVar, Mapping, TypeVar

__all__ = ["Method", "LearnedPreconditioner", "KINDS", "register_preconditioner", "preconditioner_kinds",
           "preconditioner_kind", "evaluation_methods", "learned_methods", "CLASSICAL_METHODS"]

#: fe_operators' own kinds, registered (imported) on first use of the registry
_BUILTIN = ("fe_operators.precond.kind_neural_mg", "fe_operators.precond.kind_dcdm")

#: kind name -> the registered kind (an instance of its class)
KINDS: dict[str, "LearnedPreconditioner"] = {}

_loaded = False


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of ``precond evaluate`` that a kind contributes.

    Attributes
    ----------
    description
        What it is, for ``--help`` (``"CG + NeuralMG (Galerkin V-cycle, learned smoothers)"``).
    pc
        The ``pc_python_type`` (an importable ``"module.Class"``), or None when
        :meth:`LearnedPreconditioner.solver_parameters` is overridden for it.
    model_option
        The PC's option that names the checkpoint (``"neuralmg_model"``); None: the PC takes
        no option (the model goes in ``appctx``).
    takes_model
        The method runs the kind's trained network (given with the kind's ``model_flag``);
        False for a classical comparison row the kind owns (it gets
        :meth:`LearnedPreconditioner.fixed_model`).
    needs_hierarchy
        The mesh must be a level of a ``MeshHierarchy``.
    options
        Krylov options over the default CG ones (DCDM: ``{"ksp_type": "fcg", ...}``).
    """

    description: str
    pc: str | None = None
    model_option: str | None = None
    takes_model: bool = True
    needs_hierarchy: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class LearnedPreconditioner:
    """The base class of a learned preconditioner kind (module docstring).

    Class attributes a kind sets
    ----------------------------
    section : str
        The configuration section of its options (``smoother``, ``dcdm``); a valid
        identifier, unique among the kinds.
    options : type
        A dataclass whose fields are made with :func:`fe_operators.options.option`.
    section_doc : str
        One line for ``--print-config``.
    description : str
        One line: what the kind trains and which preconditioners use it.
    network : str
        The ``"module:Class"`` of its network (registered as a checkpointable model
        class by the registration, imported on first load).
    what, users, model_flag : str
        For messages: ``"a learned smoother"``, the preconditioners that take it, and the
        ``precond evaluate`` flag of its checkpoint (``"--model"``).
    checkpoint_name : str
        An example file name for messages (``"smoother.pt"``).
    methods : dict
        ``precond evaluate`` method name -> :class:`Method`.

    Methods a kind implements
    -------------------------
    :meth:`train` (required); :meth:`worse`, :meth:`bytes_per_sample`,
    :meth:`solver_parameters`, :meth:`fixed_model` have defaults.
    """

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""
    options: ClassVar[type] = type(None)
    section_doc: ClassVar[str] = ""
    description: ClassVar[str] = ""
    network: ClassVar[str] = ""
    what: ClassVar[str] = ""
    users: ClassVar[str] = ""
    model_flag: ClassVar[str] = ""
    checkpoint_name: ClassVar[str] = "model.pt"
    methods: ClassVar[dict[str, Method]] = {}

    # --------------------------------------------------------------- training
    def train(self, cfg: Any, family: Any, log: Callable[[str], None]) -> tuple[Any, list[dict[str, float]],
                                                                               dict[str, Any]]:
        """Train the network on ``family`` for ``cfg``'s budget.

        Parameters
        ----------
        cfg
            The validated configuration (``cfg.<section>`` holds this kind's options,
            ``cfg.train`` the budget, ``cfg.family`` the operator family).
        family
            The training operators (:func:`fe_operators.precond.training.training_family`):
            ``V``, ``bcs``, ``sample_coefficient(rng)``, ``operator(a)``, ``contrast(a)``.
        log
            Where progress lines go.

        Returns
        -------
        tuple
            ``(network, history, report)``: the trained ``torch.nn.Module`` (eval mode),
            the loss history of :func:`fe_operators.precond.training.optimise` and the
            held-out report (JSON-able numbers, stored in the checkpoint).
        """
        raise NotImplementedError(f"preconditioner kind {self.name!r} does not implement train()")

    def worse(self, cfg: Any, report: Mapping[str, Any]) -> tuple[str, float, float, str] | None:
        """``(measure, learned, classical, classical_name)`` comparing the trained network with its
        classical counterpart on held-out data (lower is better), or None for no comparison.
        ``precond train`` refuses a network whose ``learned > classical`` unless ``allow_worse``."""
        return None

    def bytes_per_sample(self, cfg: Any, n_rows: int) -> int:
        """A lower bound of the memory one training operator of ``n_rows`` rows keeps (the size
        guard before sampling); extra guards raise :class:`~fe_operators.errors.ConfigError`."""
        return 24 * int(n_rows)  # its CSR matrix: a value, a column index and a row pointer per row

    # --------------------------------------------------------------- solving
    def solver_parameters(self, method: str, model: Any, krylov: Mapping[str, Any]) -> dict[str, Any]:
        """The PETSc options of one of :attr:`methods` over the default Krylov options.

        ``model`` is a checkpoint path (set as the method's ``model_option``) or a network
        (handed over in ``appctx["precond_model"]``: no option is set) or None for a method
        that takes no model.
        """
        spec = self.methods[method]
        out = {**krylov, "pc_type": "python", "pc_python_type": spec.pc, **spec.options}
        if spec.model_option and isinstance(model, (str, os.PathLike)):
            out[spec.model_option] = str(model)
        return out

    def fixed_model(self, method: str) -> Any:
        """The network of a method that takes no trained model (e.g. the classical weights), or None."""
        return None

    @property
    def reference(self) -> str:
        """The network's ``"module:Class"`` (what the kind checks of checkpoints compare)."""
        return self.network

    @property
    def option(self) -> str:
        """The ``precond evaluate`` flag of the kind's checkpoint (alias of :attr:`model_flag`)."""
        return self.model_flag


K = TypeVar("K", bound=type)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FLAG = re.compile(r"^--[a-z][a-z0-9-]*$")

#: the classical rows of ``precond evaluate`` (after every kind's): method -> description
CLASSICAL_METHODS: dict[str, str] = {
    "gamg": "CG + GAMG",
    "gmg": "CG + Firedrake GMG (pc_type mg, Chebyshev(2)/Jacobi, LU coarse)",
    "icc": "CG + ICC(0)",
}


def register_preconditioner(name: str) -> Callable[[K], K]:
    """Register a :class:`LearnedPreconditioner` subclass under ``name`` (a class decorator).

    The kind's network reference becomes a loadable checkpoint class
    (:func:`fe_operators.models.registry.model_class` imports it on first load).

    Raises
    ------
    TypeError
        Not a subclass, or a missing or invalid attribute (naming it).
    ValueError
        A name, section, ``model_flag`` or method another kind (or a classical method)
        already holds.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"preconditioner kind name {name!r}: use lower-case letters, digits and '_'")

    def deco(cls: K) -> K:
        if not (isinstance(cls, type) and issubclass(cls, LearnedPreconditioner)):
            raise TypeError(f"register_preconditioner({name!r}): {cls!r} is not a LearnedPreconditioner subclass")
        if cls.train is LearnedPreconditioner.train:
            raise TypeError(f"preconditioner kind {name!r}: {cls.__qualname__} does not implement train()")
        if not (isinstance(cls.section, str) and cls.section.isidentifier()):
            raise TypeError(f"preconditioner kind {name!r}: section {cls.section!r} is not an identifier")
        if not dataclasses.is_dataclass(cls.options):
            raise TypeError(f"preconditioner kind {name!r}: options must be a dataclass of option() fields")
        if not (isinstance(cls.network, str) and ":" in cls.network):
            raise TypeError(f"preconditioner kind {name!r}: network must be a 'module:Class' reference")
        if not _FLAG.match(cls.model_flag or ""):
            raise TypeError(f"preconditioner kind {name!r}: model_flag {cls.model_flag!r} is not a --flag")
        if not cls.methods:
            raise TypeError(f"preconditioner kind {name!r}: it declares no evaluation method")
        for other in KINDS.values():
            if other.name == name and type(other) is not cls:
                raise ValueError(f"preconditioner kind {name!r} is already registered by "
                                 f"{type(other).__module__}.{type(other).__qualname__}")
            if other.name == name:
                continue
            taken = ([f"section {cls.section!r}"] if other.section == cls.section else []) \
                + ([f"flag {cls.model_flag}"] if other.model_flag == cls.model_flag and any(
                    m.takes_model for m in other.methods.values()) else []) \
                + [f"method {m!r}" for m in cls.methods if m in other.methods]
            if taken:
                raise ValueError(f"preconditioner kind {name!r}: {', '.join(taken)} already used by kind {other.name!r}")
        clash = [m for m in cls.methods if m in CLASSICAL_METHODS or m in ("family", "train", "kind", "out")]
        if clash or cls.section in ("family", "train", "kind", "out"):
            raise ValueError(f"preconditioner kind {name!r}: {', '.join(clash) or cls.section} is reserved")
        cls.name = name
        KINDS[name] = cls()
        return cls

    return deco


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(module)


def preconditioner_kinds() -> dict[str, LearnedPreconditioner]:
    """Every registered kind (fe_operators' own first), by name."""
    _load_builtin()
    return dict(KINDS)


def preconditioner_kind(name: str) -> LearnedPreconditioner:
    """The kind registered as ``name``.

    Raises
    ------
    LookupError
        Not registered; the message lists the registered kinds.
    """
    kinds = preconditioner_kinds()
    if name not in kinds:
        raise LookupError(f"unknown preconditioner kind {name!r}; registered: {', '.join(kinds)} (a kind of your "
                          "own is registered with fe_operators.precond.register_preconditioner)")
    return kinds[name]


def learned_methods() -> dict[str, LearnedPreconditioner]:
    """``precond evaluate`` method -> the kind that owns it (every kind's methods, in order)."""
    return {m: kind for kind in preconditioner_kinds().values() for m in kind.methods}


def evaluation_methods() -> dict[str, str]:
    """Every ``precond evaluate`` method -> its description: the kinds' rows, then the classical ones."""
    out = {m: spec.description for kind in preconditioner_kinds().values() for m, spec in kind.methods.items()}
    return {**out, **CLASSICAL_METHODS}
