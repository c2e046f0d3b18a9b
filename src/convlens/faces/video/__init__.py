"""Faces in video: tracks, identities and liveness from a file, camera or stream.

    from convlens.faces.video import watch
    for event in watch("door.mp4", gallery):      # TrackEvent: appeared/identified/liveness/left
        print(event.to_json())

See stream.py (events), tracker.py (tracking) and live.py (verify/identify requiring liveness).
"""

from __future__ import annotations

from convlens.faces.video.stream import TrackEvent, Watcher, WatchOptions, identify_track, watch

__all__ = ["TrackEvent", "WatchOptions", "Watcher", "identify_track", "watch"]
