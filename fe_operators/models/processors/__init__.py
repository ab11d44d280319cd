"""SPON's processors: the extension point and the processors that ship (docs/design.md §3.2, §4).

* :mod:`~fe_operators.models.processors.base` — :class:`Processor`, the registry
  :data:`PROCESSORS`, :func:`register_processor`, :func:`processor_class`,
  :func:`processor_options`;
* :mod:`~fe_operators.models.processors.mlp` — ``"mlp"``: a dense network (one mesh);
* :mod:`~fe_operators.models.processors.gnn` — ``"gnn"``: message passing on the DOF
  graph with latent-grid stages (any mesh of the domain);
* :mod:`~fe_operators.models.processors.multigrid` — ``"multigrid"``: MgNO V-cycles on a
  mesh hierarchy (any hierarchy of the domain);
* :mod:`~fe_operators.models.processors.hierarchical` — ``"hierarchical"``: a graph U-Net
  on the FE levels of any mesh (SPON-MG; geometric and aggregated levels).

Registration: each processor module registers its class with :func:`register_processor`
when it is imported, and this package imports every processor module below, so importing
``fe_operators.models`` (or anything under it) registers all in-tree processors.  A new
in-tree processor is one module here plus one import line below; a processor outside the
package registers itself in its own module, which the user imports before building or
loading a model that names it.
"""

from fe_operators.models.processors.base import (
    ACTIVATIONS, PROCESSORS, Processor, processor_class, processor_options, register_processor,
)
# the in-tree processors: importing them registers them
from fe_operators.models.processors.gnn import GNNOptions, GNNProcessor
from fe_operators.models.processors.hierarchical import HierarchicalOptions, HierarchicalProcessor
from fe_operators.models.processors.mlp import MLPOptions, MLPProcessor
from fe_operators.models.processors.multigrid import MultigridOptions, MultigridProcessor

__all__ = [
    "Processor", "PROCESSORS", "register_processor", "processor_class", "processor_options", "ACTIVATIONS",
    "MLPProcessor", "MLPOptions", "GNNProcessor", "GNNOptions", "MultigridProcessor", "MultigridOptions",
    "HierarchicalProcessor", "HierarchicalOptions",
]
