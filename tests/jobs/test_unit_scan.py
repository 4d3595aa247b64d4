"""jobs.unit_scan: every (stage, layer)'s responses from one up-pass (models.neurons.units'
stage_maps), and their top-k over a dataset by the layer scanner, against brute force."""

from __future__ import annotations

import torch

from cluster.topk import scan_in_process
from jobs.unit_scan import LayerScanner, layer_outputs
from models.neurons.units import up_pass
from models.stack import RBMStack
from pipeline.reader import list_shards, read_frames
from tests.cluster.data import make_dataset, saved_random_stack


def _stack(path) -> RBMStack:
    return saved_random_stack(path, seed=1)


def test_layer_outputs_are_each_layers_up_pass(tmp_path):
    stack = _stack(tmp_path / "model.pt")
    frames = torch.from_numpy(read_frames(make_dataset(tmp_path / "d", n_videos=1,
                                                       frames_per_video=10)))
    keys = [(0, "hidden"), (1, "pooled"), (1, "hidden"), (0, "pooled_lcn")]
    got = layer_outputs(stack, frames, keys)
    assert list(got) == [(0, "hidden"), (0, "pooled_lcn"), (1, "pooled"), (1, "hidden")]
    for s, layer in keys:
        want = up_pass(stack, frames.float(), s, layer).flatten(1)  # (10, units)
        torch.testing.assert_close(got[(s, layer)], want, atol=1e-5, rtol=1e-4)
    assert list(layer_outputs(stack, frames, [(0, "pooled")])) == [(0, "pooled")]


def test_layer_scanner_top_k_equals_brute_force(tmp_path):
    stack = _stack(tmp_path / "model.pt")
    data = make_dataset(tmp_path / "d", n_videos=2, frames_per_video=30, shard_rows=16)
    shards = list_shards(data)
    units = {(1, "hidden"): [0, 3, 11], (0, "pooled"): [2, 40]}
    got = scan_in_process(str(tmp_path / "model.pt"), shards, units, 4, batch_size=7,
                          scanner=LayerScanner)
    frames = torch.from_numpy(read_frames(data))  # (60, 1, 16, 16), shard order
    ids = torch.cat([(i << 32) + torch.arange(len(read_frames(data, shards=[p])))
                     for i, p in enumerate(shards)])
    for (s, layer), ix in units.items():
        acts = up_pass(stack, frames.float(), s, layer).flatten(1)[:, ix]  # (60, U)
        top, where = torch.topk(acts.T, 4, dim=1)
        torch.testing.assert_close(got[(s, layer)].values, top, atol=1e-5, rtol=1e-4)
        assert torch.equal(got[(s, layer)].ids, ids[where])
