"""One network definition as 1-D, 2-D and 3-D; inflation; exact 3-D receptive fields."""

import pytest
import torch
from test_inspect_receptive import gradient_span
from torch import nn

from convlens.inspection.receptive import analyze
from convlens.nd import NdConvNet, inflate


@pytest.mark.parametrize(("nd", "size"), [(1, (64,)), (2, (32, 24)), (3, (16, 16, 8))])
def test_same_definition_runs_in_1d_2d_3d(nd, size):
    torch.manual_seed(0)
    net = NdConvNet(nd, in_channels=2, widths=(4, 8, 8), embedding_dim=16).eval()
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(len(c.kernel_size) == nd for c in convs)
    x = torch.randn(3, 2, *size)
    emb = net(x)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    # Global pooling: the embedding does not depend on where a pattern sits (circularly
    # shifted by a multiple of the total stride 8, with zero margins wider than the field).
    pad = [32] * nd
    padded = torch.zeros(3, 2, *[s + 2 * p for s, p in zip(size, pad, strict=True)])
    padded[
        (slice(None), slice(None), *[slice(p, p + s) for s, p in zip(size, pad, strict=True)])
    ] = x
    moved = torch.roll(padded, shifts=[8] * nd, dims=list(range(2, 2 + nd)))
    assert torch.allclose(net(padded), net(moved), atol=1e-5)


def test_inflated_net_on_a_constant_depth_stack_equals_the_2d_net():
    torch.manual_seed(2)
    net2 = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 4, 3, padding=1)
    ).eval()
    net3 = inflate(net2).eval()
    assert isinstance(net2[0], nn.Conv2d)  # the original is untouched
    img = torch.randn(1, 3, 16, 16)
    vol = img[:, :, None].expand(1, 3, 12, 16, 16).contiguous()
    out2, out3 = net2(img), net3(vol)
    # Away from the depth borders (whose fields reach the zero padding), every depth equals the
    # 2-D output; the pooled second conv's field reaches 2 output depths in from each border.
    assert out3.shape[2] == 6
    for d in range(2, out3.shape[2] - 2):
        assert torch.allclose(out3[:, :, d], out2, atol=1e-5), d


@pytest.mark.parametrize("layer", ["stem.0", "stem", "stage1.0", "stage1"])
def test_3d_receptive_fields_match_gradients(layer):
    torch.manual_seed(3)
    net = NdConvNet(3, 1, widths=(2, 3)).double().eval()
    with torch.no_grad():  # positive weights: no path cancels, the gradient support is exact
        for p in net.parameters():
            p.abs_()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.zero_()
    size = (9, 12, 10)
    info = analyze(net, size, channels=1)[layer]
    assert info.rf.ndim == 3 and info.rf.unknown is None
    out = info.shape[1:]
    corners = [(0, 0, 0), tuple(n - 1 for n in out), (out[0] // 2, 0, out[2] - 1)]
    for position in corners:
        if layer in ("stem", "stage1"):
            # after max-pooling the gradient reaches one pixel per window: inside the field
            got = gradient_span(net, layer, size, position, channels=1)
            want = info.rf.bounds(position, size)
            assert all(w[0] <= g[0] and g[1] <= w[1] for g, w in zip(got, want, strict=True))
        else:
            assert list(info.rf.bounds(position, size)) == gradient_span(
                net, layer, size, position, channels=1
            ), position
