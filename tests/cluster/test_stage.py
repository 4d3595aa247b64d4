"""A stage's actors as :func:`cluster.stage.start_stage` starts them, on a real local Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cluster.data import make_dataset

SCRIPT = textwrap.dedent("""
    import sys

    import ray
    import torch

    from cluster.stage import get_when_alive, start_stage
    from jobs.config import load
    from models.stack import RBMStack

    address, data, stage_dir = sys.argv[1:]
    ray.init(address=address, log_to_driver=False)
    cfg = load(None, [f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
                      "model.input_size=16", "model.input_lcn_sigma=1.5",
                      "model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1}]",
                      "train.n_workers=1", "train.n_ps_shards=2"])
    rbm = RBMStack(cfg.model, update=cfg.update,
                   generator=torch.Generator().manual_seed(0)).rbms[0]
    actors = start_stage(cfg, 0, rbm, stage_dir, worker_cpus=0.1)
    ray.kill(actors.workers[0], no_restart=False)
    ray.kill(actors.shards[0], no_restart=False)
    [out] = get_when_alive(lambda: [actors.workers[0].run.remote(2, (0, 0), 0, 0)])
    print("steps", out["steps"], "restarted shards", len(actors.restarted_shards()))
    actors.kill()
""")


def test_killed_actors_restart_from_files_without_ray_complaining(ray_cluster, tmp_path):
    """Shards start from the step-0 checkpoint on disk and workers find the shards by name, so
    no constructor argument lives in the object store: Ray does not warn that a restart could
    fail, and a killed shard and worker both come back and train."""
    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    address = ray_cluster.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-c", SCRIPT, address, str(data),
                           str(tmp_path / "stage0")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps 2 restarted shards 1" in proc.stdout
    assert "restart will fail" not in proc.stderr
    assert (tmp_path / "stage0/step00000000/shard1.pt").is_file()
