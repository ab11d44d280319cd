"""Levels below a hierarchy's coarsest mesh, by smoothed aggregation.

Moved to :mod:`fe_operators.multigrid.aggregation` (whose aggregates do not depend on the
node numbering); this module re-exports it for existing imports.
"""

from fe_operators.multigrid.aggregation import JACOBI_DAMPING, coarsen_level, extend_hierarchy

__all__ = ["coarsen_level", "extend_hierarchy", "JACOBI_DAMPING"]
