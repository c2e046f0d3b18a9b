"""Export a face encoder to ONNX: input "chips" (N, 3, 150, 150) float32 RGB 0..255, output
"embeddings" (N, D) float32, with a dynamic batch axis; the model_id travels as metadata.

Uses torch's TorchScript-based exporter (dynamo=False), which needs the `onnx` package but
not onnxscript. That exporter has no antialiased resize (SmallConvNet shrinks its 150x150
chips that way), so while tracing such a resize is written as the two fixed matrices it
amounts to: the chip size is fixed, so the resize is a constant linear map.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError

DEFAULT_OPSET = 17
CHIP_SIZE = 150
INPUT_NAME, OUTPUT_NAME = "chips", "embeddings"


def _resize_matrix(interpolate, n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """(n_out, n_in): row o holds the weights of the n_in inputs in output o along one axis.

    Resizes the identity image along its rows only: column j is then the response to the
    unit input j. (A width-1 basis would be simpler, but torch's antialiased kernel takes
    another path for width 1 and its weights differ.)"""
    basis = torch.eye(n_in).reshape(1, 1, n_in, n_in)
    out = interpolate(basis, size=(n_out, n_in), mode=mode, antialias=True, align_corners=False)
    return out[0, 0].contiguous()


@contextlib.contextmanager
def _exportable_antialias() -> Iterator[None]:
    """While tracing, F.interpolate(..., antialias=True) of a 4-d input becomes
    rows @ x @ cols.T with constant matrices (an antialiased bilinear/bicubic resize is
    separable); every other call goes to torch's own interpolate."""
    original = F.interpolate

    def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                    recompute_scale_factor=None, antialias=False):  # fmt: skip
        if not antialias or x.dim() != 4 or size is None or align_corners:
            return original(x, size, scale_factor, mode, align_corners,
                            recompute_scale_factor, antialias)  # fmt: skip
        h_out, w_out = (size, size) if isinstance(size, int) else size
        h_in, w_in = int(x.shape[-2]), int(x.shape[-1])
        rows = _resize_matrix(original, h_in, int(h_out), mode).to(x.device, x.dtype)
        cols = _resize_matrix(original, w_in, int(w_out), mode).to(x.device, x.dtype)
        return rows @ x @ cols.T

    F.interpolate = interpolate
    try:
        yield
    finally:
        F.interpolate = original


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    chip_size: int = CHIP_SIZE,
) -> Path:
    """Write `model` as an ONNX file (atomically) and return its path.

    The graph is traced for (batch, 3, chip_size, chip_size) inputs; only the batch size may
    change at run time. The model is traced in eval mode and left in the mode it was in.
    """
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise ConvlensError("ONNX export needs the onnx package (pip install onnx)") from None

    path = Path(path)
    if not path.parent.is_dir():
        raise ConvlensError(f"{path.parent}: no such folder")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dummy = torch.zeros(2, 3, chip_size, chip_size, device=device)
    was_training = model.training
    model.eval()
    # Beside the target (same file system, so the rename is atomic); created with the
    # user's umask, unlike mkstemp's private 0600 files.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), _exportable_antialias():
            # Expected: the legacy-exporter notice, and shape checks traced as constants
            # (the chip size is fixed, only the batch axis is dynamic).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        meta = {
            "model_id": str(getattr(model, "model_id", "")),
            "input": f"{INPUT_NAME}: float32 (N, 3, {chip_size}, {chip_size}) RGB, 0..255",
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except OSError as e:
        raise ConvlensError(f"{path}: cannot write ONNX file ({e.strerror or e})") from None
    except torch.onnx.errors.OnnxExporterError as e:
        # One line, not the exporter's dump of the whole graph.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConvlensError(f"cannot export this encoder to ONNX: {first}") from None
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path
