"""Mesh input and field output: shipped meshes, built-in specs, meshio files, VTU/XDMF.

``load_mesh`` turns a shipped name (``"plate_holes"``), a built-in spec
(``"unitsquare:64"``) or a mesh file into a Firedrake mesh with its boundary markers;
``mesh_info``/``format_mesh_info`` summarise a mesh (``main_mesh_info`` is the body of
``fe-operators mesh info``); ``write_fields`` writes Functions for ParaView.
"""

from fe_operators.io.info import format_mesh_info, main_mesh_info, mesh_info, radius_ratio
from fe_operators.io.readers import (
    BUILTIN_SPECS,
    MeshSource,
    load_mesh,
    resolve_mesh_spec,
    shipped_meshes,
)
from fe_operators.io.writers import write_fields

__all__ = [
    "BUILTIN_SPECS",
    "MeshSource",
    "format_mesh_info",
    "load_mesh",
    "main_mesh_info",
    "mesh_info",
    "radius_ratio",
    "resolve_mesh_spec",
    "shipped_meshes",
    "write_fields",
]
