"""A stage's actors as :func:`cluster.stage.start_stage` starts them, on a real local Ray."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest

from tests.cluster.data import make_dataset

SCRIPT = textwrap.dedent("""
    import sys
    import time

    import ray
    import torch

    from cluster.stage import start_stage
    from jobs.config import load
    from models.stack import RBMStack

    def get_when_alive(make_refs, attempts=120):
        # ray.get(make_refs()), retried while an actor restarts (Ray answers
        # ActorUnavailableError meanwhile)
        for attempt in range(attempts):
            try:
                return ray.get(make_refs())
            except ray.exceptions.RayActorError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)

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
    infos = get_when_alive(lambda: [s.info.remote() for s in actors.shards])
    print("steps", out["steps"], "restarted shards", len(actors.restarted_shards(infos)))
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


class TickingClock:
    """A fake clock one second further on at every read: the watch's limits pass in a blink."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_a_call_to_a_shard_lost_meanwhile_fails_the_run_with_one_line_not_a_hang(ray_cluster):
    """A call sent to a shard whose node died waits for Ray to restart it, which is never when no
    node has room: :func:`cluster.stage.get_from_shards` must keep probing and give up with the
    run's one-line PlacementTimeout, not wait on the call (a checkpoint hung so)."""
    from cluster.failures import PlacementTimeout
    from cluster.liveness import Liveness, StageWatch, shard_name
    from cluster.stage import get_from_shards
    from tests.cluster.test_liveness import FakeProbe

    @ray_cluster.remote(num_cpus=0)
    class NeverAnswers:
        def save(self) -> None:
            time.sleep(120)  # longer than the test allows itself

    probe, log = FakeProbe({"CPU": 0.0}), []
    live = Liveness(probe, grace_s=5.0, period_s=1.0, remind_s=30.0, clock=TickingClock())
    for j in range(2):
        live.add(shard_name(j), shard_name(j), {"CPU": 0.01}, watched=True)
    probe.up = set(live.members)
    watch = StageWatch(live, 0, 2, 20.0, every_worker=False, log=log.append)
    actor = NeverAnswers.remote()

    def sent_then_lost() -> list:
        probe.up.discard(shard_name(1))  # its node goes right after the call is sent
        return [actor.save.remote()]

    t0 = time.monotonic()
    with pytest.raises(PlacementTimeout) as failed:
        get_from_shards(watch, "stage 0 step 200: checkpoint", sent_then_lost, poll_s=0.01)
    assert time.monotonic() - t0 < 30
    assert re.fullmatch(r"stage 0 step 200: checkpoint: parameter-server shard 1 waits for "
                        r"0\.01 CPU \(none free in the cluster\), for \d+ s "
                        r"\(train\.placement_timeout_s=20\); .*--resume", str(failed.value))
    assert any("parameter-server shard 1 waits for 0.01 CPU" in line for line in log), log
    ray_cluster.kill(actor)
