"""A 1-D triplet run through the face trainer separates two synthetic "speakers", and the
trained model file enrols and identifies through the face gallery."""

import numpy as np
import pytest
from scipy.signal import lfilter

from convlens.audio.speakers import embed_waves, prepare_clip
from convlens.train.data import ChipSet

RATE = 8000


FORMANTS = {"low": (500, 1500), "high": (700, 1100)}  # (F1, F2) Hz: the "speaker"


def _resonance(x, f, bandwidth):
    r = np.exp(-np.pi * bandwidth / RATE)
    return lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / RATE), r * r], x)


def _speaker_clips(kind: str, n: int, rng) -> np.ndarray:
    """Synthetic vowels: a pulse train (random pitch 90-250 Hz, random breathiness and
    spectral tilt: the nuisance) through two resonances at the speaker's formants (+-5 %).
    An untrained network does not separate them (EER ~0.4); the speaker is the formants."""
    length = int(0.6 * RATE)
    out = []
    for _ in range(n):
        source = np.zeros(length)
        source[np.arange(0, length, RATE / rng.uniform(90, 250)).astype(int)] = 1.0
        source += rng.uniform(0, 0.3) * rng.standard_normal(length)
        source = lfilter([1], [1, -rng.uniform(0.0, 0.95)], source)
        f1, f2 = FORMANTS[kind]
        x = _resonance(source, f1 * rng.uniform(0.95, 1.05), 80)
        x = x + _resonance(source, f2 * rng.uniform(0.95, 1.05), 120)
        out.append(prepare_clip(x, RATE, seconds=1.0))
    return np.stack(out)


def _set(rng, n):
    waves = np.concatenate([_speaker_clips("low", n, rng), _speaker_clips("high", n, rng)])
    labels = np.repeat([0, 1], n)
    return ChipSet(
        waves, labels, ["low", "high"], [f"{i}.wav" for i in range(2 * n)], modality="audio"
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    from convlens.train.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    train, val = _set(rng, 12), _set(rng, 8)
    cfg = TrainConfig(
        model="speaker-cnn", init="scratch", epochs=3, steps=8, batch_p=2, batch_k=6, lr=3e-3
    )
    out = tmp_path_factory.mktemp("spk") / "spk.pt"
    trainer = Trainer(cfg, train, val, out, progress=False)
    trainer.fit()
    return trainer, val


def test_triplet_run_separates_two_synthetic_speakers(trained):
    trainer, _ = trained
    history = trainer.history
    assert history[0]["val_eer"] >= 0.2, history[0]  # untrained: the speakers overlap
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    assert history[-1]["val_eer"] <= 0.05, history[-1]
    assert trainer.objective.encoder.model_id.startswith("speaker-cnn-")


def test_trained_speaker_model_enrols_and_identifies_in_the_gallery(trained, tmp_path):
    from convlens.faces.gallery import Gallery
    from convlens.models.face_models import load_face_model

    trainer, val = trained
    model = load_face_model(trainer.out)  # the written file rebuilds the same encoder
    emb = embed_waves(model, val.chips)
    again = embed_waves(trainer.objective.encoder, val.chips)
    assert np.allclose(emb, again, atol=1e-5)
    with Gallery(tmp_path / "voices.db", model_id=model.model_id) as g:
        g.enroll_embeddings("low", emb[:1])  # one shot: one clip each
        g.enroll_embeddings("high", emb[8:9])
        g.set_threshold(1.0)
        names = [m.name for m in g.identify_embeddings(emb)]
    assert names == ["low"] * 8 + ["high"] * 8


def test_audio_data_refused_by_a_face_encoder(tmp_path):
    from convlens.errors import ConvlensError
    from convlens.train.trainer import TrainConfig, Trainer

    data = _set(np.random.default_rng(1), 3)
    with pytest.raises(ConvlensError, match="embeds face data"):
        Trainer(
            TrainConfig(init="scratch", epochs=1), data, None, tmp_path / "m.pt", progress=False
        )


def test_voices_cli_enrols_identifies_and_verifies_through_the_gallery(trained, tmp_path, capsys):
    """`convlens voices`: the faces commands' answers and exit codes, on speech clips."""
    import json

    from convlens.audio.io import write_audio
    from convlens.cli import main
    from convlens.faces.gallery import Gallery

    trainer, val = trained
    clips = []
    for i, wave in enumerate(val.chips):
        clips.append(tmp_path / f"clip{i}.wav")
        write_audio(clips[-1], wave, RATE)
    db, model = str(tmp_path / "voices.db"), str(trainer.out)
    common = ["--model", model, "--db", db]
    with pytest.raises(SystemExit) as usage:  # argparse: a missing clip is a usage error
        main(["voices", "enroll", "low", str(tmp_path / "nothing.wav"), *common])
    assert usage.value.code == 2
    assert not (tmp_path / "voices.db").exists()  # a missing clip creates no gallery
    assert main(["voices", "enroll", "low", str(clips[0]), *common, "--threshold", "1"]) == 0
    assert main(["voices", "enroll", "high", str(clips[8]), *common]) == 0
    capsys.readouterr()
    assert main(["voices", "identify", *map(str, clips), *common, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["matches"][0]["name"] for r in rows] == ["low"] * 8 + ["high"] * 8
    assert main(["voices", "verify", str(clips[3]), "--as", "low", *common]) == 0
    assert main(["voices", "verify", str(clips[3]), "--as", "high", *common]) == 1
    assert "low" in capsys.readouterr().out
    faces_db = tmp_path / "faces.db"  # a face gallery refuses the speaker encoder
    with Gallery(faces_db, model_id="dlib_resnet-v1") as g:
        g.enroll_embeddings("someone", np.eye(128, dtype=np.float32)[:1])
    args = ["voices", "identify", str(clips[0]), "--model", model, "--db", str(faces_db)]
    assert main(args) == 2
