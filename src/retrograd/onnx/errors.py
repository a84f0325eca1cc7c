"""``ExportError``: what ``rg.onnx.export`` raises for a model, op or argument it cannot export."""


class ExportError(RuntimeError):
    """``rg.onnx.export`` met something it cannot write as ONNX (the message names the op or module)."""
