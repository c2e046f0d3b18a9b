"""1-D signals: audio reading, spectral features, speaker embeddings, texture synthesis."""

from convlens.audio.io import Audio, list_audio, read_audio, write_audio

__all__ = ["Audio", "list_audio", "read_audio", "write_audio"]
