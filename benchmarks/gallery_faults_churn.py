"""The fault run's churn: writer processes enrol and forget while readers identify and writers
are SIGKILLed; then the check that every committed enrolment is there, exact, and no byte of a
forgotten person is left in the folder."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
from gallery_faults_people import ANN_MIN, MODEL, PER, photo, vectors

from convlens.errors import ConvlensError
from convlens.faces.gallery import Gallery

WORKER = textwrap.dedent(
    f"""
    import random, sys, time
    from convlens.faces import search
    search.ANN_MIN_SIZE = {ANN_MIN}
    sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
    from gallery_faults_people import vectors, photo
    from convlens.errors import ConvlensError
    from convlens.faces.gallery import ErasureIncomplete, Gallery
    path, worker, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(worker)
    mine = []
    with Gallery(path, model_id={MODEL!r}, busy_timeout=2.0) as g:
        i = 0
        while time.time() < end:
            name = f"w{{worker:03d}}p{{i:05d}}x"
            try:
                g.enroll_embeddings(name, vectors(name), sources=[photo(name)] * {PER})
                print("enrolled", name, flush=True)
                mine.append(name)
                if len(mine) > 3 and rng.random() < 0.3:
                    victim = mine.pop(rng.randrange(len(mine)))
                    print("forgetting", victim, flush=True)
                    try:
                        g.forget(victim)
                        print("forgot", victim, flush=True)
                    except ErasureIncomplete:
                        print("incomplete", victim, flush=True)
            except ConvlensError as e:
                print("error", type(e).__name__, str(e).replace(chr(10), " "), flush=True)
            i += 1
    """
)

READER = textwrap.dedent(
    f"""
    import collections, sys, time, numpy as np
    from convlens.faces import search
    search.ANN_MIN_SIZE = {ANN_MIN}
    from convlens.faces.gallery import Gallery
    path, end = sys.argv[1], float(sys.argv[2])
    counts = collections.Counter()
    rng = np.random.default_rng(0)
    with Gallery(path, model_id={MODEL!r}) as g:
        while time.time() < end:
            try:
                g.identify_embeddings(rng.standard_normal((1, 128)).astype(np.float32), k=3)
                counts["ok"] += 1
            except Exception as e:  # counting every kind is the point
                counts[type(e).__name__ + ": " + str(e)[:80]] += 1
    print(dict(counts))
    """
)


def spawn(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def churn(folder: Path, seconds: float, writers: int, kill_every: float) -> dict:
    """Writers enrol and forget, readers identify, one writer is SIGKILLed now and then."""
    path = folder / "g.db"
    end = time.time() + seconds
    running, done, worker = {}, [], 0
    for _ in range(writers):
        running[worker] = spawn(WORKER, path, worker, end)
        worker += 1
    readers = [spawn(READER, path, end) for _ in range(2)]
    kills, rng = 0, random.Random(1)
    while time.time() < end - 1:
        time.sleep(kill_every)
        victim = rng.choice(list(running))
        running[victim].send_signal(signal.SIGKILL)
        done.append(running.pop(victim))
        kills += 1
        running[worker] = spawn(WORKER, path, worker, end)
        worker += 1
    done += list(running.values())
    outs = [p.communicate(timeout=120) for p in done]
    reads = [p.communicate(timeout=120) for p in readers]
    events = Counter()
    enrolled, forgotten, incomplete, errors = set(), set(), set(), Counter()
    forgetting = set()  # a writer killed inside forget: the person may be gone or not
    by_kind = {
        "enrolled": enrolled,
        "forgot": forgotten,
        "incomplete": incomplete,
        "forgetting": forgetting,
    }
    for out, err in outs:
        for line in out.splitlines():
            kind, _, rest = line.partition(" ")
            events[kind] += 1
            if kind in by_kind:
                by_kind[kind].add(rest)
            else:
                errors[rest[:90]] += 1
        if "Traceback" in err:
            errors["traceback: " + err.strip().splitlines()[-1][:90]] += 1
    read_counts = Counter()
    for out, err in reads:
        read_counts.update(json.loads(out.replace("'", '"')) if out.strip() else {})
        if "Traceback" in err:
            read_counts["traceback"] += 1
    return {
        "enrolled": enrolled,
        "uncertain": forgetting - forgotten - incomplete,
        "forgotten": forgotten,
        "incomplete": incomplete,
        "kills": kills,
        "writer_errors": dict(errors),
        "reads": dict(read_counts),
        "events": dict(events),
    }


def check_after(folder: Path, run: dict) -> dict:
    """Committed enrolments present and exact; forgotten people absent byte for byte."""
    path = folder / "g.db"
    with Gallery(path, model_id=MODEL) as g:
        stored = {p.name for p in g.people()}
        for name in sorted(run["incomplete"]):
            try:
                g.forget(name)  # finishes the erasure that a reader held up
                run["forgotten"].add(name)
            except ConvlensError:
                pass
        survivors = run["enrolled"] - run["forgotten"] - run["incomplete"] - run["uncertain"]
        lost = [n for n in survivors if n not in stored]
        changed = [
            n
            for n in survivors
            if n in stored and not np.array_equal(g._store.person_vectors(n), vectors(n))
        ]
        size = len(g)
        # one more forget, as an operator would: cleans what killed writers left
        last = next(iter(sorted(survivors - set(lost))), None)
        if last is not None:
            g.forget(last)
            run["forgotten"].add(last)
    temps = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    blobs = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    left = Counter()
    for name in run["forgotten"]:
        needles = [v.tobytes() for v in vectors(name)] + [name.encode(), photo(name).encode()]
        for fname, data in blobs.items():
            left[fname] += sum(len(n) for n in needles if n in data)
    return {
        "committed_enrolments": len(run["enrolled"]),
        "committed_lost": len(lost),
        "killed_inside_forget": len(run["uncertain"]),
        "vectors_changed": len(changed),
        "gallery_embeddings_at_end": size,
        "forgotten_people": len(run["forgotten"]),
        "forget_incomplete_then_finished": len(run["incomplete"]),
        "residue_bytes_of_forgotten": sum(left.values()),
        "residue_by_file": {k: v for k, v in left.items() if v},
        "temp_files_left": temps,
    }
