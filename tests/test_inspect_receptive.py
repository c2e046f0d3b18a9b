"""Receptive fields from the layer stack agree with the input pixels a unit's gradient reaches."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens.inspection.receptive import analyze


class Block(nn.Module):
    """Residual block: 3x3 conv, dilated 3x3 conv, and a 1x1 (strided) projection on the skip."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 2, dilation=2)
        self.down = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        skip = x if self.down is None else self.down(x)
        return y + skip


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 5, 2, 2), nn.ReLU(), nn.AvgPool2d(3, 2, 1))
        self.b1 = Block(4, 4, 1)
        self.b2 = Block(4, 6, 2)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = F.pad(x, (1, 0, 2, 0))  # asymmetric padding: left 1, top 2
        x = self.b2(self.b1(self.stem(x)))
        return self.head(x[:, :, :, :].mean((2, 3)))


def _positive(net: nn.Module, dtype=torch.float64) -> nn.Module:
    # Positive weights and inputs: no path's contribution can cancel another's, so every pixel
    # inside the field gets a non-zero gradient and the comparison is exact.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(0.1, 1.0)
    return net.to(dtype).eval()


def _gradient_box(net, layer: str, size, y: int, x: int, low=0.5) -> tuple[int, int, int, int]:
    captured = {}
    handle = net.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.update(o=o))
    dtype = next(net.parameters()).dtype
    inp = torch.rand(1, 3, *size, dtype=dtype).add_(low).requires_grad_(True)
    try:
        net(inp)
    finally:
        handle.remove()
    captured["o"][0, 0, y, x].backward()
    rows, cols = torch.nonzero(inp.grad[0].abs().sum(0), as_tuple=True)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


SIZE = (40, 36)


@pytest.mark.parametrize("layer", ["stem.0", "stem", "b1", "b2.c1", "b2.down", "b2"])
def test_receptive_field_matches_gradient(layer):
    net = _positive(Net())
    info = analyze(net, SIZE)[layer]
    _, h, w = info.shape
    for y, x in [(h // 2, w // 2), (0, 0), (h - 1, w - 1), (0, w - 1)]:  # interior and borders
        expected = _gradient_box(net, layer, SIZE, y, x)
        assert info.rf.box(y, x, *SIZE) == expected, (layer, y, x)


def test_residual_field_is_union_of_branches():
    layers = analyze(Net(), SIZE)
    main, skip, out = layers["b2.c2"].rf, layers["b2.down"].rf, layers["b2"].rf
    assert out.h.size == max(main.h.size, skip.h.size) == 73
    assert out.h.jump == 8 and out.h.start == min(main.h.start, skip.h.start)
    assert layers["head"].rf.is_global


def test_max_pool_field_contains_gradient_support():
    net = _positive(
        nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(2, 2, 3))
    )
    info = analyze(net, (20, 20))["2"]
    assert (info.rf.h.size, info.rf.h.jump, info.rf.h.start) == (9, 2, -2)
    t, lft, b, r = info.rf.box(3, 4, 20, 20)
    gt, gl, gb, gr = _gradient_box(net, "2", (20, 20), 3, 4)
    assert t <= gt and lft <= gl and gb <= b and gr <= r


class Resample(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 2, 3, 2)
        self.u = nn.Upsample(scale_factor=2)
        self.d = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        x = F.interpolate(x, size=(50, 40), mode="bilinear", antialias=True)
        return self.d(self.u(self.c(x)))


def test_resampling_ops_are_measured():
    # No rule covers interpolation or upsampling: their row/column dependence is measured.
    net = _positive(Resample())
    size = (75, 61)
    layers = analyze(net, size)
    for layer in ("c", "u", "d"):
        info = layers[layer]
        _, h, w = info.shape
        for y, x in [(h // 2, w // 2), (0, 0), (h - 1, w - 1)]:
            assert info.rf.box(y, x, *size) == _gradient_box(net, layer, size, y, x), (layer, y, x)


def test_unknown_op_is_reported_not_guessed():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 2, 3)
            self.b = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            y = self.a(x)
            return self.b(torch.cat([y, y[:, :, :4]], dim=2))  # two inputs, new height

    layers = analyze(Stack(), (16, 16))
    assert layers["a"].rf.unknown is None
    assert "spatial size" in layers["b"].rf.unknown


def test_face_encoder_fields_match_gradient():
    # dlib's ResNet (untrained weights are enough for geometry): stride-2 layers without
    # padding (they drop the last pixels), 3x3 convs with padding, average-pooled skips added
    # with dlib's add_prev. Max pooling becomes average pooling of the same geometry so that
    # every pixel of the field gets a gradient.
    from convlens.models.dlib_resnet import DlibFaceResNet

    net = DlibFaceResNet()
    pool = net.stem.pool
    net.stem.pool = nn.AvgPool2d(pool.kernel_size, pool.stride, pool.padding)
    net.mean_rgb.zero_()  # positive inputs stay positive
    net = _positive(net)
    size = (150, 150)
    layers = analyze(net, size)
    for layer in ["stage1", "stage2.0"]:
        info = layers[layer]
        _, h, w = info.shape
        for y, x in [(h // 2, w // 3), (0, 0), (h - 1, w - 1)]:
            expected = _gradient_box(net, layer, size, y, x)
            assert info.rf.box(y, x, *size) == expected, (layer, y, x)
    # Bottom-right units: the nominal field clipped to the image would claim pixels 147..149,
    # which the unpadded stride-2 stem never reads.
    assert layers["stage1"].rf.box(34, 34, *size) == (112, 112, 147, 147)


class TFSameConv(nn.Conv2d):
    """Stride-2 conv with TensorFlow "same" padding computed from the input's shape: Python
    control flow on shapes, which torch.fx cannot trace (make_fx on the real input can)."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), self.kernel_size, self.stride, strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def test_small_convnet_inner_layers_through_aten_fallback():
    # SmallConvNet resizes its input under an `if` on the shape (untraceable by torch.fx) and
    # uses F.max_pool2d: fields of its stages come from the tapped ATen graph; max pooling
    # passes gradient from one pixel per window, so the gradient lies inside the field.
    from convlens.models.small_convnet import SmallConvNet

    net = _positive(SmallConvNet(), torch.float32)  # its forward casts chips to float32
    size = (150, 150)
    layers = analyze(net, size)
    assert [n for n in ("stem", "stage1", "stage2", "stage3") if layers[n].rf.unknown] == []
    for layer in ("stem", "stage2"):
        _, h, w = layers[layer].shape
        for y, x in [(h // 2, w // 2), (h - 1, 0)]:
            t, lft, b, r = layers[layer].rf.box(y, x, *size)
            gt, gl, gb, gr = _gradient_box(net, layer, size, y, x, low=200.0)  # > 127.5
            assert t <= gt and lft <= gl and gb <= b and gr <= r, (layer, y, x)


def test_untraceable_module_falls_back_to_aten_tracing():
    net = _positive(nn.Sequential(TFSameConv(3, 2, 3, 2), nn.ReLU(), TFSameConv(2, 2, 5, 2)))
    size = (21, 22)
    layers = analyze(net, size)
    for layer in ("0", "2"):
        info = layers[layer]
        assert info.rf.unknown is None
        _, h, w = info.shape
        for y, x in [(h // 2, w // 2), (0, 0), (h - 1, w - 1)]:
            assert info.rf.box(y, x, *size) == _gradient_box(net, layer, size, y, x), (layer, y, x)


def test_efficientnet_block_strides():
    effnet = pytest.importorskip("convlens.models.efficientnet_lite")
    layers = analyze(effnet.EfficientNetLite0().eval(), (224, 224))
    strides = [layers[f"blocks.{i}"].rf.h.jump for i in range(len(effnet.BLOCK_STRIDES))]
    assert strides == list(effnet.BLOCK_STRIDES)
    assert layers["stem.conv"].rf.box(0, 0, 224, 224) == (0, 0, 3, 3)  # TF "same": no top pad
    assert layers["classifier"].rf.is_global


def gradient_span(net, layer: str, size, position, channels: int = 2) -> list[tuple[int, int]]:
    """Per axis, the input interval the unit at `position` (channel 0) gets gradient from."""
    captured = {}
    handle = net.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.update(o=o))
    inp = torch.rand(1, channels, *size, dtype=torch.float64).add_(0.5).requires_grad_(True)
    try:
        net(inp)
    finally:
        handle.remove()
    captured["o"][(0, 0, *position)].backward()
    hit = torch.nonzero(inp.grad[0].abs().sum(0))
    return [(int(hit[:, d].min()), int(hit[:, d].max()) + 1) for d in range(len(size))]


@pytest.mark.parametrize(
    ("net", "size", "layer"),
    [
        (
            nn.Sequential(
                nn.Conv1d(2, 3, 5, 2, 2),
                nn.ReLU(),
                nn.AvgPool1d(3, 2),
                nn.Conv1d(3, 3, 3, dilation=2),
            ),
            (41,),
            "3",
        ),  # noqa: E501
        (
            nn.Sequential(
                nn.Conv3d(2, 3, 3, (1, 2, 2), 1),
                nn.ReLU(),
                nn.AvgPool3d(2),
                nn.Conv3d(3, 3, (1, 3, 3)),
            ),
            (6, 17, 15),
            "3",
        ),  # noqa: E501
    ],
)
def test_fields_are_per_axis_for_1d_and_3d_networks(net, size, layer):
    net = _positive(net)
    info = analyze(net, size, channels=2)[layer]
    assert info.rf.unknown is None and info.rf.ndim == len(size)
    for position in [(0,) * len(size), tuple(n - 1 for n in info.shape[1:])]:
        expected = gradient_span(net, layer, size, position)
        assert list(info.rf.bounds(position, size)) == expected, position
