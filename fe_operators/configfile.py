"""Configuration files: reading YAML, resolving paths, printing a commented default file.

The run configuration of ``fe-operators train`` (:mod:`fe_operators.train.config`) and
the configuration of ``fe-operators precond train`` (:mod:`fe_operators.precond.config`)
are each a schema of :func:`~fe_operators.options.option` dataclasses, kept with the code
that uses them; what a configuration *file* needs is here, once:

* :func:`read_yaml_file` — safe loading with YAML 1.2 number rules (``1e-3`` is a
  float), refusing oversized files and alias bombs before they cost memory;
* :func:`config_from_data` / :func:`load_config_file` — validation of the data into a
  schema (a :class:`~fe_operators.errors.ConfigError` names the dotted key and the file),
  with the path keys taken relative to the configuration file's folder;
* :func:`commented_yaml` — every key of a schema at its default, with its documentation
  as a comment (``--print-config``).

Nothing here imports torch or Firedrake.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fe_operators.errors import ConfigError
from fe_operators.options import OptionRow, dataclass_from_dict
from fe_operators.quoting import clip

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_NODES", "MAX_CONFIG_DEPTH", "read_yaml_file", "resolve_path",
           "config_from_data", "load_config_file", "flow", "commented_yaml"]

T = TypeVar("T")


# ----------------------------------------------------------------------------- reading
#: largest configuration file read, in bytes (checked before parsing)
MAX_CONFIG_BYTES = 1 << 20
#: most YAML nodes a configuration may hold, an alias counted as the nodes it stands for
MAX_CONFIG_NODES = 10_000
#: deepest nesting of mappings and lists in a configuration
MAX_CONFIG_DEPTH = 50


class _ConfigTooLarge(yaml.YAMLError):
    """A YAML document refused while it was composed: too many nodes, or nested too deeply."""


def _yaml12(cls: type) -> type:
    """``cls`` with YAML 1.2 float rules (``1e-3`` is a float, not a string)."""
    cls.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                     |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                     |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                     |[-+]?\.(?:inf|Inf|INF)
                     |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
        list("-+0123456789."),
    )
    return cls


class _CountingComposer(yaml.composer.Composer):
    """A composer that refuses documents too large once their aliases are expanded.

    Anchors and aliases stay allowed (a user may well write ``hidden: &h [64, 64]`` and
    reuse ``*h``), but each alias counts as the nodes it stands for: PyYAML shares an
    aliased node instead of copying it, so loading a "billion laughs" document is cheap,
    but every consumer that walks the data (validation, error messages quoting a value,
    ``yaml.safe_dump`` of the resolved configuration) pays for the expansion: 9 levels
    of 9 aliases are 9^9 strings.  The running total of expanded nodes is checked at
    every node, so a document is refused after at most :data:`MAX_CONFIG_NODES` nodes
    of work; nesting deeper than :data:`MAX_CONFIG_DEPTH` is refused before the
    composer's recursion (libyaml's own composer would overflow the C stack), and so is
    an alias inside the node it names (a value that contains itself, infinitely deep
    once walked).
    """

    def __init__(self) -> None:
        super().__init__()
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it expands to
        self._total = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        self._depth += 1
        if self._depth > MAX_CONFIG_DEPTH:
            raise _ConfigTooLarge(f"nested more than {MAX_CONFIG_DEPTH} levels deep, too deep for a "
                                      "configuration file; is it the right file?")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:
            size = self._expanded.get(id(node))
            if size is None:  # the anchored node is still being composed: one of this alias's parents
                raise _ConfigTooLarge("an alias (*name) inside the value it names makes a value that contains "
                                          "itself; write the values out")
        else:  # a node composed just now: its children are counted already
            if isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._expanded[id(c)] for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
            else:
                size = 1
            self._expanded[id(node)] = size
        # a new node adds itself (its children added themselves); an alias adds all it stands for
        self._total += size if alias else 1
        if self._total > MAX_CONFIG_NODES:
            raise _ConfigTooLarge(
                f"more than {MAX_CONFIG_NODES} values once its aliases (*name) are expanded, too many for a "
                "configuration file (a YAML alias bomb?); write the values out, or use fewer aliases" if alias else
                f"more than {MAX_CONFIG_NODES} values, too many for a configuration file; is it the right file?")
        return node


def _counting_loader() -> type:
    """The loader class: libyaml's parser if available (fast), this module's composer, the safe constructor."""
    parser = getattr(getattr(yaml, "cyaml", None), "CParser", None) if yaml.__with_libyaml__ else None
    if parser is None:
        @_yaml12
        class PyLoader(_CountingComposer, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                       yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
            def __init__(self, stream: Any) -> None:
                yaml.reader.Reader.__init__(self, stream)
                yaml.scanner.Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)
                _CountingComposer.__init__(self)
                yaml.constructor.SafeConstructor.__init__(self)
                yaml.resolver.Resolver.__init__(self)

        return PyLoader

    @_yaml12
    class CLoader(_CountingComposer, parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        # the Python composer comes first in the MRO: it replaces libyaml's (C) one
        def __init__(self, stream: Any) -> None:
            parser.__init__(self, stream)
            _CountingComposer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return CLoader


#: the loader of configuration files: safe (plain data only), YAML 1.2 numbers, bounded size
_ConfigLoader = _counting_loader()


def read_yaml_file(path: str | os.PathLike) -> Any:
    """The data of a YAML configuration file (YAML 1.2 numbers, safe loading, bounded size).

    A file is refused before it is parsed if it is larger than :data:`MAX_CONFIG_BYTES`,
    and while it is parsed as soon as it holds more than :data:`MAX_CONFIG_NODES` values
    (aliases counted at their expanded size) or nests deeper than
    :data:`MAX_CONFIG_DEPTH`; a configuration has a few dozen values, so any file within
    the byte limit loads or is refused in a fraction of a second and a few megabytes.

    Raises
    ------
    ConfigError
        The file cannot be read, is too large, is not UTF-8 text or not valid YAML.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("", f"cannot read the configuration file ({exc.strerror or exc})", path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a configuration file; "
                              "is it the right file?", path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text (byte {exc.start}); is it the right file?", path) from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # safe: plain data only, no arbitrary objects
    except _ConfigTooLarge as exc:
        raise ConfigError("", f"refused: {exc}", path) from None
    except yaml.YAMLError as exc:
        where = " ".join(str(exc).replace(' in "<unicode string>",', " at").split())
        raise ConfigError("", f"not valid YAML: {clip(where, 300)}", path) from None


# ----------------------------------------------------------------------------- validation
def resolve_path(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> str:
    """``path`` made absolute, a relative one taken relative to ``base_dir`` (default: the current folder)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return str((base / path).resolve())


def config_from_data(schema: type[T], data: Any, *, base_dir: str | os.PathLike | None = None,
                     source: str | os.PathLike | None = None, paths: Iterable[str] = ()) -> T:
    """Validate configuration data (e.g. parsed YAML) into the dataclass ``schema``.

    Parameters
    ----------
    schema
        The configuration's dataclass (fields made with :func:`~fe_operators.options.option`).
    data
        The mapping.
    base_dir
        Folder that the ``paths`` keys are taken relative to (default: the current
        folder); they are returned absolute.
    source
        The file the data came from, named in error messages.
    paths
        Dotted keys whose values are file or folder paths, e.g. ``("data.path", "out.dir")``.

    Raises
    ------
    ConfigError
        Unknown key, missing required key, wrong type or invalid value (naming the key and
        ``source``).
    """
    try:
        cfg = dataclass_from_dict(schema, data)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, source) from None
    for key in paths:
        *parents, name = key.split(".")
        owner = cfg
        for part in parents:
            owner = getattr(owner, part)
        setattr(owner, name, resolve_path(getattr(owner, name), base_dir))
    return cfg


def load_config_file(schema: type[T], path: str | os.PathLike, paths: Iterable[str] = ()) -> T:
    """Read and validate the YAML configuration file ``path``; the ``paths`` keys are relative to its folder.

    Raises
    ------
    ConfigError
        The file is missing, too large or not valid YAML, or the configuration is invalid.
    """
    path = Path(path)
    return config_from_data(schema, read_yaml_file(path), base_dir=path.parent, source=path, paths=paths)


# ----------------------------------------------------------------------------- printing
def flow(value: Any) -> str:
    """``value`` as one line of YAML (``[0.8, 0.1, 0.1]``, ``0.001``, ``null``)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def commented_yaml(rows: Iterable[OptionRow], title: str, values: Mapping[str, Any] | None = None,
                   notes: Mapping[str, str] | None = None) -> str:
    """A commented YAML file with every key of ``rows`` at its default (``--print-config``).

    Each key is preceded by its documentation as a comment; sections (nested
    dataclasses) are headings; commented-out alternatives (:attr:`OptionRow.commented`)
    are written as comments.  Required keys are ``null``: once they are filled in, the
    file is a valid configuration.

    Parameters
    ----------
    rows
        The keys, from :func:`~fe_operators.options.option_rows` of the schema.
    title
        What the file configures, for the heading (``"fe-operators train"``).
    values
        Values to show instead of the defaults, by dotted key (e.g. ``{"model.type": "spon"}``).
    notes
        A comment line to add after a key, by dotted key.
    """
    values, notes = values or {}, notes or {}
    out = [f"# {title} configuration: every key with its default.",
           "# Keys marked (required) must be set; all others may be left out.", ""]
    for row in rows:
        pad = "  " * row.key.count(".")
        name = row.key.rsplit(".", 1)[-1]
        mark = "# " if row.commented else ""
        out.append(f"{pad}# {row.doc}")
        if row.section:
            out.append(f"{pad}{mark}{name}:")
            continue
        out.append(f"{pad}{mark}{name}: {flow(values.get(row.key, row.default))}")
        if row.key in notes:
            out.append(f"{pad}# {notes[row.key]}")
    return "\n".join(out) + "\n"
