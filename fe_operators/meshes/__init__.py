"""The meshes shipped with fe_operators (gmsh .msh files); see ``meshes/README.md``.

Load them by name with :func:`fe_operators.io.load_mesh`.
"""
