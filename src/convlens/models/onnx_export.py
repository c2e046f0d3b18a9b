"""Export a face encoder to ONNX: input "chips" (N, 3, 150, 150) float32 RGB 0..255, output
"embeddings" (N, D) float32, with a dynamic batch axis; the model_id travels as metadata.

Uses torch's TorchScript-based exporter (dynamo=False), which needs the `onnx` package but
not onnxscript.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from convlens.errors import ConvlensError

DEFAULT_OPSET = 17
CHIP_SIZE = 150
INPUT_NAME, OUTPUT_NAME = "chips", "embeddings"


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
        with warnings.catch_warnings():
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
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path
