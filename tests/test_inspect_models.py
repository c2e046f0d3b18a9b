"""`convlens inspect` networks come from the model registry; their InputFormat makes the spec."""

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.inspection.inputs import scale_01
from convlens.inspection.models import DEFAULT_SIZE, TensorFormat, face_views, input_spec
from convlens.models import registry
from convlens.models.registry import InputFormat

BATCH = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)


def test_inspectable_networks_are_the_registry_entries():
    names = registry.names("inspectable")
    for name in ("dlib-resnet", "small-convnet", "efficientnet-lite0", "vgg19"):
        assert name in names
    assert registry.get("face", task="inspectable").name == "dlib-resnet"


def test_face_encoders_see_aligned_chips_one_preparer():
    entry = registry.get("face", task="inspectable")
    spec = input_spec(entry.input, "face-encoder" in entry.tasks)
    assert spec.size == (150, 150) and spec.prepare is face_views and spec.max_workers == 1
    # RGB 0..255, normalised inside the network: the chips as floats, unchanged.
    x = spec.to_tensor(BATCH)
    assert torch.equal(x, torch.from_numpy(BATCH).permute(0, 3, 1, 2).float())
    with pytest.raises(ConvlensError, match="fixed input size"):
        input_spec(entry.input, True, (224, 224))


def test_image_networks_see_the_fitted_image_in_their_value_range():
    entry = registry.get("efficientnet-lite0", task="inspectable")
    spec = input_spec(entry.input, False)
    assert spec.size == (224, 224) and spec.prepare is None
    assert torch.equal(spec.to_tensor(BATCH), scale_01(BATCH))  # bit-identical to before
    assert input_spec(entry.input, False, (96, 128)).size == (96, 128)
    vgg = registry.get("vgg19", task="inspectable")
    assert input_spec(vgg.input, False).size == DEFAULT_SIZE  # any size: ImageNet's default


def test_tensor_format_channels_and_mean_std():
    fmt = InputFormat(None, channels="BGR", value_range=1.0, mean=(0.1, 0.2, 0.3), std=(2, 4, 8))
    x = TensorFormat(fmt)(BATCH)
    rgb = torch.from_numpy(BATCH).permute(0, 3, 1, 2).double() / 255.0
    expected = (rgb.flip(1) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).double()) / (
        torch.tensor([2.0, 4.0, 8.0]).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(x.double(), expected, rtol=1e-6, atol=1e-6)
