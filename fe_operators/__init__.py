"""fe_operators: finite-element-centric operator learning on Firedrake meshes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
