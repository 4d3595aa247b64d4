"""A stage's preparation (``cluster.stage.prepare_stage``: the whitening and initial units the
driver fits before the actors start) is the same whatever thread count its caller runs at: at the
default, one thread per core, the demo's top stage got another whitening, and so another model,
on a machine with another number of cores."""

from __future__ import annotations

import torch

from cluster.stage import prepare_stage
from jobs.config import load
from models.kernels.threads import cpu_threads
from models.stack import RBMStack
from tests.cluster.data import make_dataset


def _prepared(config, threads: int) -> dict:
    """The demo stack's state after preparing both stages with the caller at ``threads``."""
    stack = RBMStack(config.model, update=config.update,
                     generator=torch.Generator().manual_seed(0), device="cpu")
    with cpu_threads(threads):
        prepare_stage(config, stack, 0)
        prepare_stage(config, stack, 1)
    return stack.state_dict()


def _tensors(state, path=""):
    if torch.is_tensor(state):
        yield path, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from _tensors(v, f"{path}/{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _tensors(v, f"{path}/{i}")


def test_the_demo_stages_are_prepared_alike_at_one_thread_and_at_four(tmp_path):
    # the demo's stages at its frame size: the top stage's whitening reads 12,000 windows of
    # 64 maps (8 x 8), where the BLAS splits its sums among threads
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=100, size=64,
                        shard_rows=50)
    config = load("demo", [f'data.path="{data}"', "train.prepare_frames=150"])
    one, four = dict(_tensors(_prepared(config, 1))), dict(_tensors(_prepared(config, 4)))
    assert one.keys() == four.keys() and any("white" in k for k in one)
    differ = [k for k in one if not torch.equal(one[k], four[k])]
    assert not differ, differ
