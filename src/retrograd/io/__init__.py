"""Saving and loading: safetensors state dicts, PyTorch weights, atomic checkpoint folders.

``rg.save(model, "m.safetensors")`` / ``model.load_state_dict(rg.load("m.safetensors"))``;
``save_safetensors``/``load_safetensors`` for ``{name: array}`` dicts;
``import_torch_state_dict`` for weights written by PyTorch.
"""
from .checkpoint import (CheckpointError, atomic_directory, load_tree, resolve_directory, save_tree,
                         verify_directory)
from .serialization import (SafetensorsFileError, import_torch_state_dict, load, load_safetensors, save,
                            save_safetensors)
from .tree import flatten, unflatten

__all__ = ["save_safetensors", "load_safetensors", "save", "load", "import_torch_state_dict",
           "SafetensorsFileError", "CheckpointError", "atomic_directory", "verify_directory",
           "resolve_directory", "save_tree", "load_tree", "flatten", "unflatten"]
