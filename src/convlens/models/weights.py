"""Where pretrained weight files live: packaged files found without importing their packages,
a user cache for converted weights, and an offline switch for anything that would download."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from convlens.errors import ConvlensError


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package.

    (face_recognition_models' __init__ imports pkg_resources, which newer setuptools lack.)
    """
    path = _packaged(package, parts)
    if path is None:
        raise ConvlensError(f"package {package!r} is not installed (pip install {package})")
    if not path.exists():
        raise ConvlensError(f"{path}: missing from the installed package {package!r}")
    return path


def installed_file(package: str, *parts: str) -> Path | None:
    """The file `parts` inside the installed `package`, or None when either is absent."""
    path = _packaged(package, parts)
    return path if path is not None and path.exists() else None


def _packaged(package: str, parts: tuple[str, ...]) -> Path | None:
    """Where `parts` would be inside `package` (None: the package is not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.joinpath(*parts)


def dlib_model_file(name: str) -> Path:
    """One of the .dat files of face-recognition-models, e.g. 'shape_predictor_5_face_landmarks'."""
    return package_file("face_recognition_models", "models", f"{name}.dat")


def cache_dir() -> Path:
    """Per-user cache for converted weights; CONVLENS_CACHE overrides."""
    override = os.environ.get("CONVLENS_CACHE")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("convlens"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    """True when downloads are forbidden (CONVLENS_OFFLINE=1 or HF/torch hub offline flags)."""
    flags = ("CONVLENS_OFFLINE", "HF_HUB_OFFLINE", "TORCH_HUB_OFFLINE")
    return any(os.environ.get(f, "") not in ("", "0") for f in flags)
