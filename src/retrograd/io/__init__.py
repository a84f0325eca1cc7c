"""Saving and loading: safetensors state dicts, PyTorch weights, atomic checkpoint folders.

``rg.save(model.state_dict(), f)`` / ``model.load_state_dict(rg.load(f))`` with ``f`` a
path or a binary file object (nothing is pickled: a whole Module is refused);
``save_safetensors``/``load_safetensors`` for ``{name: array}`` dicts;
``import_torch_state_dict`` for weights written by PyTorch; ``serialization`` is
also ``retrograd.serialization`` (``torch.serialization``'s names).
"""
from . import serialization
from .checkpoint import (CheckpointError, atomic_directory, load_tree, resolve_directory, save_tree,
                         verify_directory)
from .serialization import (SafetensorsFileError, add_safe_globals, clear_safe_globals, get_safe_globals,
                            import_torch_state_dict, load, load_safetensors, safe_globals, save, save_safetensors)
from .tree import flatten, unflatten

__all__ = ["save_safetensors", "load_safetensors", "save", "load", "import_torch_state_dict",
           "SafetensorsFileError", "CheckpointError", "atomic_directory", "verify_directory",
           "resolve_directory", "save_tree", "load_tree", "flatten", "unflatten", "serialization",
           "add_safe_globals", "get_safe_globals", "clear_safe_globals", "safe_globals"]
