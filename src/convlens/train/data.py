"""Training data: a folder with one subfolder per person, turned into aligned face chips once.

    people/
      alice/ 1.jpg 2.png ...
      bob/   ...

Each photo is detected and aligned with the face pipeline (convlens.faces) once; the chips are
cached on disk as an .npz keyed by the folder's content (names, sizes, modification times) and
the detector settings, so a second run starts at once. Photos that give no chip are skipped and
reported with the reason; a photo with several faces contributes its largest one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlens import images
from convlens.errors import ConvlensError
from convlens.faces.detect import DEFAULT_DETECTOR

CHIP = 150
CACHE_VERSION = 1


@dataclass
class ChipSet:
    chips: np.ndarray  # uint8 (N, 150, 150, 3)
    labels: np.ndarray  # int64 (N,), index into people
    people: list[str]  # person (subfolder) names
    paths: list[str]  # source photo per chip, relative to the folder
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason)
    multi_face: list[tuple[str, int]] = field(default_factory=list)  # (photo, faces found)
    # What the chips are: "face" (uint8 (N, 150, 150, 3) chips) or "audio" (float32
    # (N, samples) waveforms); convlens.train.modality says how each is batched and embedded.
    modality: str = "face"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, people: list[str]) -> ChipSet:
        """The chips of the named people, relabelled 0..len(people)-1 in that order."""
        index = {name: i for i, name in enumerate(self.people)}
        missing = [p for p in people if p not in index]
        if missing:
            raise ConvlensError(f"no such people in the training folder: {missing[:5]}")
        remap = np.full(len(self.people), -1, dtype=np.int64)
        for new, name in enumerate(people):
            remap[index[name]] = new
        keep = np.nonzero(remap[self.labels] >= 0)[0]
        return ChipSet(
            self.chips[keep],
            remap[self.labels[keep]],
            list(people),
            [self.paths[k] for k in keep],
            modality=self.modality,
        )

    def report(self) -> str:
        """A few lines: chips per person, photos skipped and why."""
        counts = np.bincount(self.labels, minlength=len(self.people))
        what = "face chips" if self.modality == "face" else f"{self.modality} clips"
        lines = [
            f"{len(self)} {what} of {len(self.people)} people "
            f"({counts.min() if len(counts) else 0}..{counts.max() if len(counts) else 0} each)"
        ]
        if self.skipped:
            reasons: dict[str, int] = {}
            for _, why in self.skipped:
                reasons[why] = reasons.get(why, 0) + 1
            summary = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
            lines.append(f"skipped {len(self.skipped)} photos: {summary}")
            lines += [f"  {path}: {why}" for path, why in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        if self.multi_face:
            lines.append(f"{len(self.multi_face)} photos had several faces; used the largest")
        return "\n".join(lines)


def list_people(root: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """(person, photo paths) of a labelled folder; at least one person."""
    people = images.list_people(root)
    if not people:
        raise ConvlensError(
            f"{root}: no person subfolders with images (expected {root}/PERSON/photo.jpg)"
        )
    return people


def _folder_key(root: Path, people: list[tuple[str, list[Path]]], settings: dict) -> str:
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for _, photos in people:
        for f in photos:
            st = f.stat()
            h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


# A chipper turns an image file into (number of faces found, the chosen chip or None, reason).
Chipper = Callable[[Path], tuple[int, np.ndarray | None, str]]


def pipeline_chipper(detector: str = DEFAULT_DETECTOR, upsample: int = 1) -> Chipper:
    """Detect and align with convlens.faces; the largest face of each photo."""
    from convlens import faces
    from convlens.images import load_image

    def chip(path: Path) -> tuple[int, np.ndarray | None, str]:
        try:
            image = load_image(path)
        except ConvlensError as e:
            return 0, None, f"unreadable ({str(e).split(': ', 1)[-1]})"
        # dlib's 150x150 chips: what the trainable encoders (dlib ResNet, SmallConvNet) take.
        found, chips = faces.face_chips(
            image, detector=detector, upsample=upsample, aligner="dlib-5"
        )
        if len(found) == 0:
            return 0, None, "no face found"
        return len(found), np.asarray(chips[0]), ""  # faces come largest first

    return chip


def load_face_folder(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    chipper: Chipper | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> ChipSet:
    """Chips of every person's photos, from the cache when the folder has not changed."""
    from convlens.progress import track

    root = Path(root)
    people = list_people(root)
    kind = "pipeline" if chipper is None else getattr(chipper, "__qualname__", "custom")
    key = _folder_key(root, people, {"detector": detector, "upsample": upsample, "chipper": kind})
    if cache_dir is None:
        from convlens.models.weights import cache_dir as user_cache

        cache_dir = user_cache() / "chips"
    cache = Path(cache_dir) / f"{root.name}-{key}.npz"
    if use_cache and cache.exists():
        try:
            return _read_cache(cache)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            pass
    chipper = chipper or pipeline_chipper(detector, upsample)
    chips, labels, paths, skipped, multi = [], [], [], [], []
    todo = [(i, f) for i, (_, photos) in enumerate(people) for f in photos]
    for i, f in track(todo, f"aligning faces in {root.name}", unit="photo", disable=not progress):
        rel = str(f.relative_to(root))
        n, chip, why = chipper(f)
        if chip is None:
            skipped.append((rel, why))
            continue
        if n > 1:
            multi.append((rel, n))
        chips.append(chip)
        labels.append(i)
        paths.append(rel)
    if not chips:
        raise ConvlensError(f"{root}: no face found in any photo")
    result = ChipSet(
        np.stack(chips).astype(np.uint8),
        np.asarray(labels, dtype=np.int64),
        [name for name, _ in people],
        paths,
        skipped,
        multi,
    )
    if use_cache:
        _write_cache(cache, result)
    return result


def load_audio_folder(
    root: str | os.PathLike, rate: int, seconds: float = 3.0, progress: bool = True
) -> ChipSet:
    """Every speaker's clips (ROOT/SPEAKER/clip.wav) as fixed-length speech at `rate` Hz
    (convlens.audio.speakers.prepare_clip); unreadable or silent clips are skipped and listed."""
    from convlens.audio.speakers import list_speakers, load_clip
    from convlens.progress import track

    root = Path(root)
    speakers = list_speakers(root)
    clips, labels, paths, skipped = [], [], [], []
    todo = [(i, f) for i, (_, files) in enumerate(speakers) for f in files]
    for i, f in track(todo, f"reading clips in {root.name}", unit="clip", disable=not progress):
        rel = str(f.relative_to(root))
        try:
            clips.append(load_clip(f, rate, seconds))
        except ConvlensError as e:
            skipped.append((rel, str(e).split(": ", 1)[-1]))
            continue
        labels.append(i)
        paths.append(rel)
    if not clips:
        raise ConvlensError(f"{root}: no readable speech clip")
    names = [name for name, _ in speakers]
    labels = np.asarray(labels, dtype=np.int64)
    return ChipSet(np.stack(clips), labels, names, paths, skipped, modality="audio")


def _write_cache(path: Path, s: ChipSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"people": s.people, "paths": s.paths, "skipped": s.skipped, "multi": s.multi_face}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")  # concurrent writers never mix
    np.savez(tmp, chips=s.chips, labels=s.labels, meta=np.asarray(json.dumps(meta)))
    os.replace(tmp, path)


def _read_cache(path: Path) -> ChipSet:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return ChipSet(
            z["chips"],
            z["labels"],
            meta["people"],
            meta["paths"],
            [tuple(x) for x in meta["skipped"]],
            [tuple(x) for x in meta["multi"]],
        )


def split_people(
    people: list[str],
    val_people: int | list[str] | None = None,
    val_split: float | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """(train, validation) people: named ones, N random ones, or a random fraction."""
    if isinstance(val_people, list):
        val = [p for p in people if p in set(val_people)]
        missing = sorted(set(val_people) - set(val))
        if missing:
            raise ConvlensError(f"validation people not in the folder: {missing[:5]}")
    else:
        if val_people is None:
            val_people = round(len(people) * (0.2 if val_split is None else val_split))
        if not 0 <= val_people < len(people):
            raise ConvlensError(
                f"cannot hold out {val_people} of {len(people)} people for validation"
            )
        order = np.random.default_rng(seed).permutation(len(people))
        chosen = set(order[:val_people].tolist())
        val = [p for i, p in enumerate(people) if i in chosen]
    train = [p for p in people if p not in set(val)]
    return train, val


class PKSampler:
    """Batches of P people x K chips each; batch `step` is a pure function of (seed, step, rank),
    so a resumed run sees exactly the batches an uninterrupted one would, and DDP ranks differ.

    People with fewer than 2 chips cannot form a positive pair and are never drawn; a person with
    fewer than K chips is drawn with repetition.
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0, rank: int = 0):
        labels = np.asarray(labels)
        self.by_person = [np.nonzero(labels == c)[0] for c in np.unique(labels)]
        self.by_person = [ix for ix in self.by_person if len(ix) >= 2]
        if len(self.by_person) < 2:
            raise ConvlensError(
                "training needs at least 2 people with 2 or more face chips each "
                f"(have {len(self.by_person)})"
            )
        self.p = min(p, len(self.by_person))
        self.k = k
        self.seed = seed
        self.rank = rank

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step, self.rank])
        people = rng.choice(len(self.by_person), self.p, replace=False)
        out = []
        for c in people:
            ix = self.by_person[c]
            out.append(rng.choice(ix, self.k, replace=len(ix) < self.k))
        return np.concatenate(out)

    def __iter__(self) -> Iterator[np.ndarray]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1
