"""jobs.preflight: each check a train job passes before Ray starts, on small real datasets; each
failure is one PreflightError (a jobs.errors.UserError: exit 2) naming what to change."""

from __future__ import annotations

import pytest

from jobs.config import load
from jobs.errors import UserError, exit_status
from jobs.preflight import (
    PreflightError,
    check_data_feeds_workers,
    check_device,
    check_storage,
    preflight,
    worker_frames,
)
from pipeline.shards import empty_manifest, write_manifest
from pipeline.storage import LocationError
from tests.cluster.data import make_dataset

SMALL = ["--data.batch_size=16", "--data.holdout_frames=0", "--model.input_size=16",
         "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]", "--train.stages=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 2 videos x 40 frames, 16 rows per shard: shards of 16, 16, 8 frames per video
    return make_dataset(tmp_path_factory.mktemp("data"), n_videos=2, frames_per_video=40,
                        shard_rows=16)


def _config(data, tmp_path, *overrides):
    return load(None, [f'--data.path="{data}"', *SMALL,
                       f'--train.run_dir="{tmp_path / "run"}"', *overrides])


def test_a_dataset_that_feeds_every_worker_passes(dataset, tmp_path):
    from cluster.trainer import check_data

    config = _config(dataset, tmp_path, "--train.n_workers=2")
    preflight(config)  # nothing raised
    train_shards, _ = check_data(config)
    assert worker_frames(config, train_shards) == [40, 40]  # round robin over 16, 16, 8 x 2


def test_a_worker_with_less_than_a_batch_names_the_batch_size(dataset, tmp_path):
    config = _config(dataset, tmp_path, "--train.n_workers=5", "--data.batch_size=12")
    with pytest.raises(PreflightError) as caught:
        check_data_feeds_workers(config)
    message = str(caught.value)
    assert "fewer than data.batch_size=12" in message and "--data.batch_size=8" in message
    assert "\n" not in message


def test_an_empty_dataset_says_ingest_first(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(data, empty_manifest({"input_size": 16}))
    with pytest.raises(PreflightError, match="has no frames .*`catneuron ingest SOURCES --out"):
        check_data_feeds_workers(_config(data, tmp_path))


def test_cuda_without_a_gpu_is_refused_here_but_not_for_a_cluster(dataset, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    config = _config(dataset, tmp_path, '--train.device="cuda"')
    with pytest.raises(PreflightError, match="use --train.device=cpu"):
        check_device(config, None)
    check_device(config, "ray://head:10001")  # the cluster's workers may have GPUs
    check_device(_config(dataset, tmp_path, '--train.device="cpu"'), None)


def test_a_uri_that_leaves_its_prefix_is_refused_before_any_request(dataset, tmp_path):
    config = _config(dataset, tmp_path, '--train.run_dir="s3://bucket/runs/../../x"')
    with pytest.raises(LocationError):
        check_storage(config)


def test_a_preflight_error_is_a_usage_error():
    error = PreflightError("use --train.device=cpu")
    assert isinstance(error, UserError) and isinstance(error, ValueError)
    assert exit_status(error) == 2


@pytest.mark.parametrize("damage", ["garbage", "rows"])
def test_a_damaged_shard_or_a_row_count_the_files_do_not_hold_is_refused(dataset, tmp_path,
                                                                          damage):
    """Any shard, not only the first: its footer is read before Ray starts."""
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    manifest = json.loads((data / "_manifest.json").read_text())
    last = manifest["shards"][-1]
    if damage == "garbage":
        (data / last["path"]).write_text("garbage")
    else:
        last["rows"] += 5
        (data / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PreflightError, match=last["path"]) as caught:
        check_data_feeds_workers(_config(data, tmp_path, "--train.n_workers=2"))
    assert "\n" not in str(caught.value)
