"""Mesh input and field output: shipped meshes, built-in specs, meshio files, VTU/XDMF.

``load_mesh`` turns a shipped name (``"plate_holes"``), a built-in spec
(``"unitsquare:64"``) or a mesh file, optionally refined (``"plate_holes/r2"``), into a
Firedrake mesh with its boundary markers (``load_hierarchy`` also gives the refined
spec's ``MeshHierarchy``);
``mesh_info``/``format_mesh_info`` summarise a mesh (``fe-operators mesh info`` prints
them: :mod:`fe_operators.cli.mesh`); ``validate_cells`` is the check every mesh file's cells pass
when read (vertex indices, finite coordinates, no vertex listed twice, no zero-measure
cell); ``write_fields`` writes Functions for ParaView.
"""

from fe_operators.io.info import format_mesh_info, mesh_info, radius_ratio
from fe_operators.io.readers import load_hierarchy, load_mesh
from fe_operators.io.specs import BUILTIN_SPECS, MAX_CELLS, MeshSource, max_cells, resolve_mesh_spec, shipped_meshes
from fe_operators.io.validate import validate_cells
from fe_operators.io.writers import write_fields

__all__ = [
    "BUILTIN_SPECS",
    "MAX_CELLS",
    "MeshSource",
    "format_mesh_info",
    "load_hierarchy",
    "load_mesh",
    "max_cells",
    "mesh_info",
    "radius_ratio",
    "resolve_mesh_spec",
    "shipped_meshes",
    "validate_cells",
    "write_fields",
]
