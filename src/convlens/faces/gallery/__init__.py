"""A persistent face gallery: people, their embeddings, the encoder's id and the threshold.

`Gallery` is the one entry point; the work is split along its seams:

* storage.py (and schema.py): the SQLite file, transactions, people, enrolment rows, the
  change log;
* index.py: exact in-memory search, and the FAISS ANN index for big galleries;
* policy.py: τ and its provenance, the verifier, the min rule, and the answers
  (Verdict, Candidate, FaceMatch).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError
from convlens.faces import search as _search
from convlens.faces.box import Box
from convlens.faces.detect import DEFAULT_DETECTOR
from convlens.faces.gallery import postgres as _postgres
from convlens.faces.gallery.enrolment import EnrollResult, file_hash
from convlens.faces.gallery.index import GalleryIndex
from convlens.faces.gallery.policy import (
    Candidate,
    DecisionThreshold,
    FaceMatch,
    ThresholdPolicy,
    Verdict,
)
from convlens.faces.gallery.rows import DamagedRow, DiskFull, ErasureIncomplete, NoSuchPerson
from convlens.faces.gallery.schema import (
    APPLICATION_ID,
    BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    check_gallery_file,
)
from convlens.faces.gallery.storage import GalleryStore, Person, Photo

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Candidate",
    "DamagedRow",
    "DecisionThreshold",
    "DiskFull",
    "EnrollResult",
    "ErasureIncomplete",
    "FaceMatch",
    "Gallery",
    "NoSuchPerson",
    "Person",
    "Photo",
    "Verdict",
    "check_gallery_file",
]


def _registered_encoder(model_id: str | None) -> str | None:
    """The registry name of the encoder that makes `model_id` embeddings (None: the default),
    so a gallery opened without naming one keeps the encoder it was built with."""
    from convlens.models import registry

    for entry in registry.entries("face-encoder"):
        if model_id is not None and entry.extras.get("model_id") == model_id:
            return entry.name
    return None


def _label(photo) -> str:
    return str(photo) if isinstance(photo, str | os.PathLike) else "photo"


class Gallery:
    """Enrol, forget, rename, identify (1:K) and verify (1:1) against a gallery file.

    encoder: an nn.Module face encoder (with `model_id`), a registry name or a model path for
    `load_face_model`; None loads the default encoder when a photo first needs encoding.
    device: where a named or default encoder runs (None/"auto": CUDA when present).
    model_id: the encoder id for embedding-only use (`enroll_embeddings`, ...), e.g. in tests.
    verifier: a trained verifier (verifier.py) or its path; scores pairs instead of distance.
    encode_options: keyword arguments for `faces.encode_many` (detector, upsample, flip, ...);
    the detector defaults to faces.detect.DEFAULT_DETECTOR.
    create: make the gallery file if there is none (at the first successful write only).
    busy_timeout: seconds to wait for other processes' locks (writers; readers that hold an
    old snapshot while a forget overwrites the deleted rows).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        encoder=None,
        *,
        model_id: str | None = None,
        verifier=None,
        encode_options: dict | None = None,
        create: bool = True,
        device=None,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ):
        self._encoder = encoder
        self._device = device
        self._encoder_loaded = encoder is not None and not isinstance(encoder, str | os.PathLike)
        self._model_id = model_id
        if self._encoder_loaded:
            self._model_id = getattr(encoder, "model_id", model_id)
        self.encode_options = {"detector": DEFAULT_DETECTOR, **(encode_options or {})}
        if _postgres.is_database_url(path):  # several machines share one PostgreSQL gallery
            self._store, self._index = _postgres.open_gallery(path, create)
        else:
            self._store = GalleryStore(path, create=create, busy_timeout=busy_timeout)
            self._index = GalleryIndex(self._store)
        self.path = self._store.path
        self._policy = ThresholdPolicy(
            self._store, verifier, lambda: self._store.model_id or self._model_id
        )
        if self._model_id is not None:
            try:
                self._store.check_model(self._model_id)
            except BaseException:
                self._store.close()
                raise

    def close(self) -> None:
        self._index.close()
        self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._store.count()

    # -- what the gallery holds ----------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        """The encoder id stored in the gallery (None until the first enrolment)."""
        return self._store.model_id

    @property
    def dim(self) -> int | None:
        return self._store.dim

    def people(self) -> list[Person]:
        return self._store.people()

    # -- threshold -------------------------------------------------------------------------------

    @property
    def threshold(self) -> float | None:
        """τ for raw distances: calibrated if `set_threshold` stored one, else the encoder's
        shipped default, else None (uncalibrated: identify names nobody)."""
        return self._policy.threshold

    @property
    def calibrated(self) -> bool:
        """Whether `set_threshold` (calibrate) stored this gallery's own τ."""
        return self._policy.calibrated

    @property
    def threshold_info(self) -> dict:
        """τ, whether it was calibrated here, and its provenance (source, FAR, TAR, ...)."""
        return self._policy.threshold_info

    def set_threshold(self, tau: float, info: dict | None = None) -> None:
        self._policy.set_threshold(tau, info)

    def decision_threshold(self) -> DecisionThreshold:
        """The τ identify/verify use now: the verifier's when one is set, else the distance τ."""
        return self._policy.decision_threshold()

    @property
    def verifier(self):
        return self._policy.verifier

    # -- people ----------------------------------------------------------------------------------

    def forget(self, name: str) -> int:
        """Delete the person and every embedding of theirs; returns how many were erased.

        Erasure is verified: when forget returns, no copy of their rows is left in the
        database file, its WAL, the ANN index or a temporary index file (deleted rows are
        zeroed by secure_delete, the WAL checkpointed and truncated, the index caught up or
        removed). When that cannot be done yet (another process holds an old snapshot open)
        it raises ErasureIncomplete saying what remains: the person is deleted, and calling
        forget again with the same name finishes the erasure (and returns 0).
        """
        name = self._store.check_name(name)
        pending = self._store.erasure_pending()
        traces = self._store.traces(name)
        try:
            vectors = self._store.person_vectors(name)  # for the index's centroids
        except (NoSuchPerson, DamagedRow):
            vectors = None
        try:
            erased = len(self._store.forget(name))
        except NoSuchPerson:
            if not pending:
                raise
            erased = 0
        problems = self._index.erased(vectors)
        wal = self._store.scrub(traces)
        if wal:
            problems.append(wal)
        if problems:
            raise ErasureIncomplete(
                f"{self.path}: {name!r} is deleted but not yet erased from disk: "
                + "; ".join(problems)
                + "; forget them again to finish"
            )
        self._store.erasure_done()
        return erased

    @property
    def repairs(self) -> list[str]:
        """Damage found and repaired in this session (an ANN index rebuilt), as messages."""
        return list(self._index.repairs)

    def rename(self, old: str, new: str) -> None:
        self._store.rename(old, new)

    def photos(self, name: str) -> list[Photo]:
        """The embeddings enrolled for `name` (id, source, sha256, box, created)."""
        return self._store.photos(name)

    def forget_photo(self, name: str, photo_id: int) -> None:
        """Erase one embedding of `name` (verified as `forget` does); forgetting the last one
        forgets the person."""
        vector = self._store.forget_photo(self._store.check_name(name), photo_id)
        problems = self._index.erased(vector[None])
        wal = self._store.scrub([vector.tobytes()])
        if wal:
            problems.append(wal)
        if problems:
            raise ErasureIncomplete(
                f"{self.path}: photo {photo_id} of {name!r} is deleted but not yet erased "
                "from disk: " + "; ".join(problems)
            )
        self._store.erasure_done()

    def labelled_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Every embedding (n, D) float32 and its person's name (n,), e.g. to calibrate τ
        on the gallery itself (faces.calibrate.pair_scores)."""
        pids, vecs, names = self._store.vectors_by_person()
        return vecs, np.asarray([names[int(p)] for p in pids], dtype=object)

    # -- enrolment -------------------------------------------------------------------------------

    def _claim(self, model_id: str | None, what: str) -> str:
        model_id = model_id or self._model_id
        if model_id is None:
            raise ConvlensError(f"{what} needs the encoder's model_id")
        return model_id

    def enroll_embeddings(
        self,
        name: str,
        embeddings: np.ndarray,
        *,
        model_id: str | None = None,
        sources: Sequence[str | None] | None = None,
        hashes: Sequence[str | None] | None = None,
        boxes: Sequence[Sequence[int] | None] | None = None,
    ) -> EnrollResult:
        """Store embeddings for `name` (created if new) in one transaction.

        Rows whose hash is already stored for this person are skipped; a hash stored for
        someone else is refused (one photo cannot show two people's largest face).
        """
        name = self._store.check_name(name)
        model_id = self._claim(model_id, "enroll_embeddings")
        result = self._store.enroll_embeddings(
            name, embeddings, model_id=model_id, sources=sources, hashes=hashes, boxes=boxes
        )
        self._model_id = self._model_id or model_id
        return result

    def enroll_batch(
        self, names: Sequence[str], embeddings: np.ndarray, model_id: str | None = None
    ) -> list[int]:
        """Bulk load: one embedding per name (people created as needed), one transaction."""
        model_id = self._claim(model_id, "enroll_batch")
        ids = self._store.enroll_batch(names, embeddings, model_id)
        self._model_id = self._model_id or model_id
        return ids

    def enroll(self, name: str, photos: Iterable, largest_face: bool = False) -> EnrollResult:
        """Enrol photos of one person; each must show exactly one face (or largest_face=True).

        All photos are encoded first; nothing is stored unless every photo is usable.
        """
        photos = [photos] if isinstance(photos, str | os.PathLike | np.ndarray) else list(photos)
        if not photos:
            raise ConvlensError("enroll needs at least one photo")
        embs, sources, hashes, boxes = [], [], [], []
        for photo in photos:
            label = _label(photo)
            found = self._encode(photo)
            if not found:
                raise ConvlensError(f"{label}: no face found; not enrolled")
            if len(found) > 1 and not largest_face:
                raise ConvlensError(
                    f"{label}: {len(found)} faces found; enrol a photo with one face, "
                    "or ask for the largest face"
                )
            face = found[0]  # faces.encode returns the largest first
            embs.append(face.embedding)
            sources.append(str(Path(photo).resolve()) if label != "photo" else None)
            hashes.append(file_hash(photo))
            boxes.append(Box.of(face.box))
        return self.enroll_embeddings(
            name,
            np.stack(embs),
            model_id=self.encoder_model_id(),
            sources=sources,
            hashes=hashes,
            boxes=boxes,
        )

    # -- encoder ---------------------------------------------------------------------------------

    @property
    def encoder(self):
        if not self._encoder_loaded:
            from convlens.faces.pipeline import resolve_model

            if self._encoder is None:  # the encoder this gallery was built with, if registered
                self._encoder = _registered_encoder(self._store.model_id)
            self._encoder = resolve_model(self._encoder, self._device)
            self._encoder_loaded = True
            self._model_id = self._encoder.model_id
            self._store.check_model(self._model_id)
        return self._encoder

    def encoder_model_id(self) -> str:
        return self.encoder.model_id

    def _encode(self, photo) -> list:
        from convlens import faces

        return faces.encode(photo, model=self.encoder, **self.encode_options)

    # -- search and decisions --------------------------------------------------------------------

    def search_embeddings(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]]:
        """Per query, the k nearest people as (name, Euclidean distance), min rule."""
        return self._index.search(queries, k)

    def identify_embeddings(
        self, queries: np.ndarray, k: int = 1, boxes: Sequence | None = None
    ) -> list[FaceMatch]:
        q = _search.check_vectors(queries, self.dim)
        ranked = self.search_embeddings(q, k=self._policy.shortlist_size(k))
        return self._policy.decide(q, ranked, k, boxes)

    def verify_embedding(self, query: np.ndarray, name: str) -> Verdict:
        """Is this embedding (or any of several, (F, D)) `name`?"""
        q = _search.check_vectors(query, self.dim)
        return self._policy.verdict(q, self._store.check_name(name))

    def _matches(self, found: list, k: int) -> list[FaceMatch]:
        if not found:
            return []
        self._store.check_model(self.encoder_model_id())
        embs = np.stack([f.embedding for f in found])
        return self.identify_embeddings(embs, k=k, boxes=[Box.of(f.box) for f in found])

    def identify(self, photo, k: int = 1) -> list[FaceMatch]:
        """Every face in the photo with its k best candidates; name None beyond τ."""
        return self._matches(self._encode(photo), k)

    def identify_many(
        self, photos, k: int = 1, progress: bool = False, batch_size: int = 64
    ) -> Iterator[tuple[object, list[FaceMatch] | ConvlensError]]:
        """(photo, matches) for every photo, in order, as identify gives them; a photo that
        cannot be read gives (photo, ConvlensError) and the rest go on. `photos`: one path,
        a folder (its images) or an iterable; encoded in batches (faces.encode_many).
        Bad options raise ConvlensError before any photo is read."""
        from convlens import faces

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConvlensError(f"k must be a whole number ≥ 1, not {k!r}")
        stream = faces.encode_many(
            photos, batch_size, model=self.encoder, progress=progress, **self.encode_options
        )
        return self._match_stream(stream, k)

    def _match_stream(self, stream, k: int):
        for photo, result in stream:
            if isinstance(result, ConvlensError):
                yield photo, result
            else:
                yield photo, self._matches(result, k)

    def verify(self, photo, name: str) -> Verdict:
        """Is `name` in the photo? Every face found is compared: a match when any face is
        within τ; the closest face's box is reported and `faces` says how many were compared.
        Refuses a photo with no face."""
        name = self._store.check_name(name)
        self._store.person_id(name)
        found = self._encode(photo)
        if not found:
            raise ConvlensError(f"{_label(photo)}: no face found")
        self._store.check_model(self.encoder_model_id())
        q = _search.check_vectors(np.stack([f.embedding for f in found]), self.dim)
        return self._policy.verdict(q, name, [Box.of(f.box) for f in found])
