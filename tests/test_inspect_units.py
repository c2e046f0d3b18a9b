"""Streaming top-k: equal to a brute-force sort over all activations, and bounded in memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.errors import ConvlensError
from convlens.inspection import InputSpec, ScanProgress, scan
from convlens.inspection.topk import TopK, parse_units

SIZE = (16, 16)


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2), nn.ReLU()
    )
    with torch.no_grad():
        net[2].bias[4] = -1e3  # unit 4 of layer "3" can never fire
    return net.eval()


def _images(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n)]


SPEC = InputSpec(SIZE, prepare=lambda im: [im])  # the arrays are the network inputs


def _all_activations(net, images, layer):
    x = SPEC.to_tensor(np.stack(images))
    with torch.no_grad():
        return dict(net.named_children())[layer](net[: int(layer)](x)).numpy()


@pytest.mark.parametrize("per_image", [True, False])
def test_top_k_equals_brute_force_sort(per_image):
    net, images, k = _net(), _images(37), 5
    res = scan(
        net,
        images,
        {"1": "0:6", "3": None},
        SPEC,
        top=k,
        batch_size=7,
        per_image=per_image,
    )
    assert res.items == res.images == 37
    for layer in ("1", "3"):
        acts = _all_activations(net, images, layer)  # (N, C, H, W)
        n, c, h, w = acts.shape
        top = res.layers[layer]
        assert top.units == list(range(c)) and top.shape == (c, h, w)
        for u in range(c):
            a = acts[:, u].reshape(n, h * w)
            if per_image:
                vals, img, pos = a.max(1), np.arange(n), a.argmax(1)
            else:
                vals, img, pos = (
                    a.ravel(),
                    np.repeat(np.arange(n), h * w),
                    np.tile(np.arange(h * w), n),
                )
            order = np.lexsort((pos, img, -vals))[:k]  # value desc, then stream order
            np.testing.assert_allclose(top.values[u], vals[order], rtol=1e-6)
            np.testing.assert_array_equal(top.ids[u] // 4096, img[order])
            np.testing.assert_array_equal(
                top.positions[u], np.stack([pos[order] // w, pos[order] % w], 1)
            )
            assert top.mean[u] == pytest.approx(acts[:, u].mean(), rel=1e-5)
            assert top.max[u] == pytest.approx(acts[:, u].max())
    acts = _all_activations(net, images, "3")
    dead = res.layers["3"].dead
    assert 4 in dead and dead == [u for u in range(acts.shape[1]) if acts[:, u].max() <= 0]


def test_buffer_is_bounded_by_k():
    buf = TopK(n_units=3, k=9)
    for step in range(200):
        vals = torch.rand(3, 50)
        ids = torch.arange(step * 50, step * 50 + 50).expand(3, -1)
        buf.push(vals, ids, torch.zeros(3, 50, dtype=torch.long))
        assert buf.values.shape == buf.ids.shape == buf.positions.shape == (3, 9)
    assert torch.all(buf.values[:, :-1] >= buf.values[:, 1:])


def test_memory_does_not_grow_with_image_count(tmp_path):
    paths = []
    for i, im in enumerate(_images(12)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    net = _net()

    def peak(n_copies):
        tracemalloc.start()
        scan(net, paths * n_copies, {"3": None}, SPEC, batch_size=8)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    peak(1)  # warm-up: first-call allocations
    small, large = peak(2), peak(16)  # 24 vs 192 images
    assert large < small * 1.25 + 256 * 1024, (small, large)


def test_unreadable_image_is_skipped_and_the_rest_goes_on(tmp_path):
    for i, im in enumerate(_images(5)):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="2.png"):
        res = scan(_net(), tmp_path, {"1": "0:2"}, SPEC)
    assert res.images == 4 and len(res.skipped) == 1 and "2.png" in res.skipped[0]
    assert 2 not in set(res.layers["1"].ids.ravel() // 4096)


def test_parse_units():
    assert parse_units("0:4", 10) == [0, 1, 2, 3]
    assert parse_units("3,7", 10) == [3, 7]
    assert parse_units("all", 3) == [0, 1, 2]
    assert parse_units("::4", 10) == [0, 4, 8]
    with pytest.raises(ConvlensError, match="out of range"):
        parse_units("3,12", 10, "conv1")
    with pytest.raises(ConvlensError, match="bad unit list"):
        parse_units("a-b", 10)
    with pytest.raises(ConvlensError, match="selects no unit"):
        parse_units("5:5", 10)


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ConvlensError, match=r"unknown layer 'nope'; valid layers: 0, 1, 2, 3"):
        scan(_net(), _images(2), {"nope": None}, SPEC)


def test_top_views_are_kept_so_each_image_is_prepared_once():
    calls = []
    spec = InputSpec(SIZE, prepare=lambda im: calls.append(1) or [im, 255 - im])  # 2 views each
    net, images = _net(), _images(25)
    res = scan(net, images, {"1": "0:3", "3": [0, 4]}, spec, top=4, batch_size=6)
    assert res.items == 50 and len(calls) == 25
    live = {int(i) for t in res.layers.values() for i in t.ids.ravel()}
    assert set(res.views) == live and len(live) <= 3 * 4 + 2 * 4
    from convlens.inspection.units import load_items

    views = load_items(res, sorted(live), spec)
    assert len(calls) == 25  # nothing prepared again
    for i in live:
        src, view = res.source_of(i)
        np.testing.assert_array_equal(views[i], src if view == 0 else 255 - src)


def test_progress_goes_to_the_callback(tmp_path):
    for i, im in enumerate(_images(5)):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    (tmp_path / "4.png").write_bytes(b"not a png")  # the last image is skipped
    spec = InputSpec(SIZE, prepare=lambda im: [im, im])  # two network inputs per image
    events: list[ScanProgress] = []
    with pytest.warns(UserWarning, match="4.png"):
        scan(_net(), tmp_path, {"1": "0:2"}, spec, batch_size=3, callback=events.append)
    assert [e.images_done for e in events] == [1, 2, 3, 4, 5]
    assert {e.total for e in events} == {5}
    assert [e.inputs for e in events] == [2, 4, 6, 8, 8]
    assert events[-1].skipped == 1 and events[0].skipped == 0


def test_inspect_units_passes_the_callback_on(tmp_path):
    from convlens.inspection import inspect_units

    events = []
    inspect_units(_net(), _images(3), "3", [0], top=2, input_size=SIZE, callback=events.append)
    assert events[-1] == ScanProgress(images_done=3, total=3, inputs=3, skipped=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top": 0}, "top must be"),
        ({"batch_size": 0}, "batch size must be"),
        ({"top": 2.5}, "top must be"),
    ],  # fmt: skip
)
def test_library_errors_name_values_not_flags(options, message):
    with pytest.raises(ConvlensError, match=message) as exc:
        scan(_net(), _images(2), {"1": None}, SPEC, **options)
    assert "--" not in str(exc.value)


def test_parse_unit_spec_syntax_only():
    from convlens.inspection import parse_unit_spec

    assert parse_unit_spec("0:16") == slice(0, 16)
    assert parse_unit_spec("3,7,12") == [3, 7, 12]
    assert parse_unit_spec("all") is None
    for bad in ("2:9x", "::0", "", ",", "1:2:3:4"):
        with pytest.raises(ConvlensError, match="bad unit list"):
            parse_unit_spec(bad)
