"""Pictures of what the engine records: ``draw_graph`` draws the autograd graph (graphviz)."""
from retrograd.viz.graph import draw_graph

__all__ = ["draw_graph"]
