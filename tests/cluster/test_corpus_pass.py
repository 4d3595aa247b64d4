"""``cluster.corpus_pass`` without Ray: which frames each worker ranks (every frame of the
dataset once, numbered as read in order) and the merge of their partial lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.config import DataConfig
from cluster.corpus_pass import merge, worker_parts
from cluster.worker import split_holdout
from pipeline.reader import list_shards, shards_for_worker
from tests.cluster.data import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 4 videos x 96 frames of 16x16, 48 rows per shard -> 8 shards
    return make_dataset(tmp_path_factory.mktemp("data"), size=16)


@pytest.mark.parametrize("holdout,n_workers", [(32, 3), (0, 2)])
def test_every_frame_is_ranked_once_each_worker_its_own_shards(dataset, holdout, n_workers):
    data = DataConfig(path=str(dataset), holdout_frames=holdout)
    parts, shards, rows = worker_parts(data, n_workers)
    assert shards == list_shards(dataset) and rows == [48] * 8
    covered = [path for part in parts for path, _ in part]
    assert sorted(covered) == sorted(shards)  # each shard once
    first = {path: i * 48 for i, path in enumerate(shards)}
    assert all(start == first[path] for part in parts for path, start in part)
    train, held = split_holdout(str(dataset), holdout)
    for k, part in enumerate(parts):
        own = shards_for_worker(train, k, n_workers)
        assert [p for p, _ in part] == own + (held if k == 0 else [])


def test_the_partial_lists_merge_into_the_top_of_all_frames():
    rng = np.random.default_rng(0)
    responses = rng.normal(size=(30, 4)).astype(np.float32)  # 30 frames, 4 units
    answers = []
    for rows in (np.arange(0, 12), np.arange(12, 30)):  # two workers' frames
        order = np.argsort(-responses[rows], axis=0)[:5].T  # (units, 5)
        answers.append({"pooled": (np.take_along_axis(responses[rows].T, order, 1),
                                   rows[order])})
    got = merge(1, answers, 5, ["a", "b"], [12, 18]).tops["pooled"]
    want = torch.topk(torch.from_numpy(responses).T, 5, dim=1)
    torch.testing.assert_close(got.values, want.values)
    assert torch.equal(got.ids, want.indices)
