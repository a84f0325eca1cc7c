"""Devices: ``rg.device("cpu")`` and the ``device=`` argument, as PyTorch's ``torch.device``.

retrograd runs on the CPU only. A ``device`` object for another type (``"cuda"``, ``"mps"``) can be
made, as in PyTorch, so ``torch.device("cuda" if torch.cuda.is_available() else "cpu")`` and
device-valued config entries work; anything that would put a tensor there raises a RuntimeError
that says what to change (``check``)."""
from __future__ import annotations

from typing import Any

# PyTorch's device types, in its order: all are valid names, only "cpu" is available here
_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve", "fpga", "maia",
          "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia", "privateuseone")


class device:  # noqa: N801  (PyTorch's name)
    """A device: ``device("cpu")``, ``device("cpu", 0)``, ``device("cpu:0")`` or ``device(other_device)``.

    ``type`` is the device type (``"cpu"``), ``index`` its index or None. Equality, hashing, ``str``
    and ``repr`` follow ``torch.device`` (so ``device("cpu") != device("cpu", 0)`` and a device never
    equals a string: compare ``d.type == "cpu"``)."""

    __slots__ = ("_type", "_index")

    def __init__(self, type: Any, index: int | None = None) -> None:  # noqa: A002
        if isinstance(type, device):
            if index is not None:
                raise TypeError("device(): a device object takes no index argument")
            self._type, self._index = type._type, type._index
            return
        if isinstance(type, int) and not isinstance(type, bool):  # an accelerator index, as torch.device(0)
            raise RuntimeError(f"device({type}): cannot access accelerator device when none is available; "
                               + str(unavailable(f"accelerator {type}")))
        if not isinstance(type, str):
            raise TypeError(f"device(): argument 'type' must be str or device, not {builtin_type(type).__name__}")
        name, sep, idx = type.partition(":")
        if name not in _TYPES:
            raise RuntimeError(f"Expected one of {', '.join(_TYPES)} device type at start of device string: {type}")
        if sep:
            if index is not None:
                raise RuntimeError(f"type (string) must not include an index because index was passed "
                                   f"explicitly: {type}")
            if not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{type}'")
            index = int(idx)
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"device(): argument 'index' must be int, not {builtin_type(index).__name__}")
            if index < 0:
                raise RuntimeError(f"Device index must not be negative, got {index}")
        self._type, self._index = name, index

    @property
    def type(self) -> str:
        return self._type

    @property
    def index(self) -> int | None:
        return self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, device):
            return False
        return self._type == other._type and self._index == other._index

    def __hash__(self) -> int:
        return hash((self._type, self._index))

    def __str__(self) -> str:
        return self._type if self._index is None else f"{self._type}:{self._index}"

    def __repr__(self) -> str:
        if self._index is None:
            return f"device(type='{self._type}')"
        return f"device(type='{self._type}', index={self._index})"

    def __reduce__(self) -> tuple:
        return (device, (self._type, self._index))

    def __enter__(self) -> "device":
        """``with rg.device("cpu"):`` makes it the default device inside, as ``torch.device``; any other
        device raises."""
        check(self, "with device(...)")
        _stack.append(_default["device"])
        _default["device"] = self
        return self

    def __exit__(self, *exc: object) -> None:
        _default["device"] = _stack.pop()


builtin_type = type
CPU = device("cpu")
_default = {"device": CPU}
_stack: list = []  # devices entered with ``with device(...)``, innermost last


def unavailable(what: str, op: str = "") -> RuntimeError:
    """The error for asking for a device that is not the CPU."""
    where = f"{op}: " if op else ""
    return RuntimeError(f"{where}retrograd runs on the CPU; device {what!r} is not available: use device='cpu' "
                        f"(or `device = 'cuda' if rg.cuda.is_available() else 'cpu'`) or drop .cuda()/.to('cuda')")


def check(dev: Any, op: str = "") -> device:
    """``dev`` (None, a string, an int or a device) as a CPU ``device``; any other device raises."""
    if dev is None:
        return _default["device"]
    d = dev if isinstance(dev, device) else device(dev)
    if d._type != "cpu":
        raise unavailable(str(d), op)
    return d


def is_device(obj: Any) -> bool:
    """Whether ``obj`` names a device (a device object or a device string such as ``"cpu"``, ``"cuda:0"``)."""
    if isinstance(obj, device):
        return True
    return isinstance(obj, str) and obj.partition(":")[0] in _TYPES


def set_default_device(dev: Any) -> None:
    """``rg.set_default_device("cpu")`` (or None); any other device raises, as nothing else is available."""
    _default["device"] = check(dev, "set_default_device")


def get_default_device() -> device:
    return _default["device"]
