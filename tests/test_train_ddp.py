"""DistributedDataParallel under torchrun: 2 CPU processes on gloo run steps, replicas agree."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from convlens.train.data import ChipSet
    from convlens.train.trainer import TrainConfig, Trainer

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    data = ChipSet(chips, np.repeat(np.arange(6), 4), [f"p{i}" for i in range(6)], [""] * 24)
    cfg = TrainConfig(init="scratch", embedding_dim=8, small_input=16, small_width=4,
                      epochs=1, steps=2, batch_p=3, batch_k=2, lr=1e-2, device="cpu")
    t = Trainer(cfg, data, None, out + "/m.pt", progress=False)
    init = torch.cat([p.detach().flatten().clone() for p in t.objective.parameters()])
    batch = torch.from_numpy(t.sampler.batch(0))
    t.fit()
    flat = torch.cat([p.detach().flatten() for p in t.objective.parameters()])
    flats = [torch.zeros_like(flat) for _ in range(2)]
    batches = [torch.zeros_like(batch) for _ in range(2)]
    dist.all_gather(flats, flat)
    dist.all_gather(batches, batch)
    if dist.get_rank() == 0:
        assert dist.get_world_size() == 2 and dist.get_backend() == "gloo"
        assert not torch.equal(batches[0], batches[1]), "ranks drew the same batch"
        assert torch.equal(flats[0], flats[1]), "replicas differ after training"
        assert not torch.equal(flats[0], init), "no step was taken"
        print("DDP-OK")
    dist.barrier()  # neither rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
    """
)


def test_ddp_two_gloo_processes_keep_replicas_identical(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    r = subprocess.run(
        [*cmd, str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "DDP-OK" in r.stdout
    assert (tmp_path / "m.pt").exists()  # only rank 0 writes; the file loads like any other
    from convlens.models.face_models import load_face_model

    assert load_face_model(tmp_path / "m.pt")(torch.zeros(1, 3, 150, 150)).shape == (1, 8)
