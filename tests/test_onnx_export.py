"""ONNX export of the face encoder: onnxruntime gives torch's embeddings at any batch size."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.models.dlib_resnet import load_dlib_face_resnet
from convlens.models.onnx_export import export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model():
    return load_dlib_face_resnet()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "encoder.onnx")


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_torch(model, exported, batch):
    x = torch.from_numpy(np.random.default_rng(batch).uniform(0, 255, (batch, 3, 150, 150)))
    x = x.float()
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"chips": x.numpy()})
    with torch.inference_mode():
        want = model(x).numpy()
    assert got.shape == (batch, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_export_records_model_id_and_leaves_mode(model, exported, tmp_path):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta["model_id"] == model.model_id
    model.train()
    try:
        export_onnx(model, tmp_path / "again.onnx")
        assert model.training
    finally:
        model.eval()
    assert [p.name for p in tmp_path.iterdir()] == ["again.onnx"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "again.onnx").stat().st_mode & 0o777 == 0o666 & ~umask  # like any file


def test_export_to_missing_folder(model, tmp_path):
    with pytest.raises(ConvlensError, match="no such folder"):
        export_onnx(model, tmp_path / "nope" / "m.onnx")
