"""The learned pair verifier: features, training, saving, use by the gallery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens import metrics
from convlens.errors import ConvlensError
from convlens.faces.calibrate import pair_scores
from convlens.faces.gallery import Gallery
from convlens.faces.verifier import (
    load_verifier,
    pair_features,
    save_verifier,
    train_verifier,
)


def clusters(rng, people=30, per=5, d=32):
    # identity lives in the first half of the components; the second half is pure noise
    centres = np.zeros((people, d))
    centres[:, : d // 2] = rng.standard_normal((people, d // 2)) * 0.3
    x = np.repeat(centres, per, 0)
    x[:, : d // 2] += rng.standard_normal((people * per, d // 2)) * 0.05
    x[:, d // 2 :] += rng.standard_normal((people * per, d // 2)) * 0.3
    return x.astype(np.float32), np.repeat([f"p{i}" for i in range(people)], per)


def test_chi2_features_are_safe_with_signed_components():
    a = torch.tensor([[1.0, -1.0, 0.0, -2.0]])
    b = torch.tensor([[1.0, 1.0, 0.0, -1.0]])
    f = pair_features(a, b, "chi2")
    assert torch.isfinite(f).all() and (f >= 0).all()
    np.testing.assert_allclose(f.numpy(), [[0.0, 2.0, 0.0, 1 / 3]], rtol=1e-5)
    np.testing.assert_allclose(pair_features(a, b, "abs").numpy(), [[0, 2, 0, 1]])
    with pytest.raises(ConvlensError):
        pair_features(a, b, "cosine")


@pytest.mark.parametrize("kind", ["abs", "chi2"])
def test_verifier_learns_to_ignore_noise_components(tmp_path, kind):
    rng = np.random.default_rng(0)
    x, y = clusters(rng)
    model = train_verifier(x, y, kind=kind, model_id="synthetic", epochs=200)
    xt, yt = clusters(np.random.default_rng(1))  # other people
    d_plain, same = pair_scores(xt, yt)
    d_ver, same2 = pair_scores(xt, yt, scorer=model)
    assert (same == same2).all()
    eer_plain, _ = metrics.equal_error_rate(d_plain, same)
    eer_ver, _ = metrics.equal_error_rate(d_ver, same)
    assert eer_ver < eer_plain
    w = model.linear.weight.detach().numpy()[0]
    assert np.abs(w[:16]).mean() > 3 * np.abs(w[16:]).mean()
    path = tmp_path / "v.pt"
    save_verifier(model, path)
    again = load_verifier(path)
    np.testing.assert_allclose(
        again.probability(xt[:5], xt[5:10]), model.probability(xt[:5], xt[5:10])
    )
    assert again.kind == kind and again.model_id == "synthetic"


def test_gallery_uses_verifier(tmp_path):
    rng = np.random.default_rng(0)
    x, y = clusters(rng)
    model = train_verifier(x, y, model_id="synthetic", epochs=200)
    path = tmp_path / "g.db"
    with Gallery(path, model_id="synthetic") as g:
        xt, yt = clusters(np.random.default_rng(2), people=5)
        for i in range(5):
            g.enroll_embeddings(f"q{i}", xt[i * 5][None])
    with Gallery(path, model_id="synthetic", verifier=model) as g:
        (m,) = g.identify_embeddings(xt[7][None], k=2)
        assert m.scorer == "verifier" and m.name == "q1" and m.threshold == pytest.approx(0.5)
        v = g.verify_embedding(xt[8], "q1")
        assert v.match and v.scorer == "verifier" and 0 <= v.distance < 0.5
        assert not g.verify_embedding(xt[8], "q3").match
    model.model_id = "other-encoder"
    with Gallery(path, verifier=model) as g, pytest.raises(ConvlensError, match="verifier"):
        g.verify_embedding(xt[8], "q1")


def test_not_a_verifier_file(tmp_path):
    bad = tmp_path / "v.pt"
    bad.write_bytes(b"nonsense")
    with pytest.raises(ConvlensError, match="not a convlens verifier"):
        load_verifier(bad)
