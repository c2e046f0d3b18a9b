"""dlib's face detectors and landmark models, registered by name.

The detectors themselves run in convlens.faces.detect (dlib objects, one per thread); these
entries say where their weights come from and load one.
"""

from __future__ import annotations

from convlens.models.registry import ModelEntry, Weights, register, register_model

_PACKAGE = "face_recognition_models"


@register_model(
    name="hog",
    tasks=("face-detector",),
    about="dlib's HOG + linear SVM frontal face detector (fast on a CPU)",
    weights=Weights(None, licence="BSL-1.0", source="built into dlib"),
)
def _load_hog(path=None):
    from convlens.faces.detect import hog_detector

    return hog_detector()


@register_model(
    name="cnn",
    aliases=("mmod",),
    tasks=("face-detector",),
    about="dlib's MMOD CNN face detector (finds turned and small faces; slow on a CPU)",
    weights=Weights(
        _PACKAGE,
        ("models", "mmod_human_face_detector.dat"),
        licence="CC0-1.0",
        source="dlib (Davis King)",
    ),
)
def _load_cnn(path=None):
    from convlens.faces.detect import cnn_detector

    return cnn_detector()


def _load_landmarks(points: int):
    def load(path=None):
        from convlens.faces.detect import shape_predictor

        return shape_predictor(points)

    return load


for _points, _licence in ((5, "CC0-1.0"), (68, "iBUG 300-W: no commercial use")):
    register(
        ModelEntry(
            name=f"landmarks-{_points}",
            tasks=("face-landmarks",),
            about=f"dlib's {_points}-point face landmark model (alignment"
            + (", liveness cues)" if _points == 68 else ")"),
            load=_load_landmarks(_points),
            weights=Weights(
                _PACKAGE,
                ("models", f"shape_predictor_{_points}_face_landmarks.dat"),
                licence=_licence,
                source="dlib (Davis King)",
            ),
        )
    )
