"""Object-store locations are checked before any work, by every job: a missing bucket or a
``..`` in a URI is one line and exit status 2, with nothing decoded, uploaded or written (moto's
S3 server on 127.0.0.1, the jobs' own ``main``)."""

from __future__ import annotations

import socket

import pytest

from pipeline import storage
from pipeline.ingest import downloads_dir

ESCAPE = "s3://catneuron/checks/../escape"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every case here must end before Ray starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("pipeline.pool.ensure_ray", refuse)


def _closed_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _run(job: str, argv: list[str]) -> int:
    from importlib import import_module

    return import_module(f"jobs.{job}").main(argv)


TRAIN = ["--model.input_size=16", "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]",
         "--train.stages=1", "--quiet"]
CASES = {  # job, arguments with LOCATION in the place of a location that is written
    "ingest": ("ingest", ["--demo", "--out", "LOCATION", "--quiet"]),
    "train": ("train", ['--data.path="unused"', "--run-dir=LOCATION", *TRAIN]),
    "train-data": ("train", ['--data.path="LOCATION/data"', "--run-dir=unused", *TRAIN]),
    "resume": ("train", ["--resume", "--run-dir=LOCATION", "--quiet"]),
    "evaluate": ("evaluate", ["--run", "LOCATION", "--quiet"]),
    "submit": ("submit", ["--address", "CLOSED", "--no-wait", "ingest", "--demo", "--out",
                          "LOCATION"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("location, message", [
    ("s3://nosuchbucket/data", "the bucket 'nosuchbucket' does not exist"),
    (ESCAPE, "may not hold '.' or '..' segments"),
])
def test_a_bad_location_is_one_line_before_any_work(s3_store, tmp_path, monkeypatch, capsys,
                                                    case, location, message):
    monkeypatch.chdir(tmp_path)  # "unused" local paths land here
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # and the demo corpus of a bucket
    job, argv = CASES[case]
    argv = [a.replace("LOCATION", location).replace("CLOSED", _closed_address()) for a in argv]
    assert _run(job, argv) == 2
    err = capsys.readouterr().err
    assert message in err and location in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert storage.list_files("s3://catneuron/escape") == []  # nothing written anywhere
    assert list(tmp_path.iterdir()) == []  # no demo corpus written, nothing staged
    assert not downloads_dir(location).exists()


def test_a_good_bucket_passes_and_leaves_no_trace(s3_store):
    storage.check_location("s3://catneuron/fresh/run", write=True)
    assert storage.list_files("s3://catneuron/fresh/run") == []


def test_submit_finds_the_locations_among_a_jobs_arguments():
    from jobs.submit import storage_arguments

    args = ["clips/", "https://example.org/v.mp4", "--out", "s3://b/data", '--data.path="gs://c/d"',
            "--run-dir=s3://b/runs/x", "--probe", "s3://b/probe", "--run", "s3://b/runs/y"]
    assert storage_arguments(args) == [("s3://b/data", True), ("gs://c/d", False),
                                       ("s3://b/runs/x", True), ("s3://b/probe", False),
                                       ("s3://b/runs/y", True)]


@pytest.mark.parametrize("case", ["ingest", "train-data", "submit"])
@pytest.mark.parametrize("location, message", [
    ("s3://", "the URI names no bucket"),
    ("s3:///x", "the URI names no bucket"),
    ("s3://catneuron/a//x", "the URI has an empty path component"),
])
def test_a_malformed_uri_is_one_line_in_our_words(s3_store, tmp_path, monkeypatch, capsys,
                                                  case, location, message):
    """Before: pyarrow's 'Path cannot start with a separator' naming the write check's probe,
    'Empty path component', or a suggestion to ingest into s3://."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    job, argv = CASES[case]
    argv = [a.replace("LOCATION", location).replace("CLOSED", _closed_address()) for a in argv]
    assert _run(job, argv) == 2
    err = capsys.readouterr().err
    assert message in err and "write-check" not in err and "ingest --demo" not in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("job, argv", [
    ("train", ['--data.path="s3://catneuron/data"', "--run-dir=s3://catneuron/run", *TRAIN]),
    ("plan", ["--config", "s3://catneuron/job.toml", "--nodes", "1", "--gflops-per-core", "1"]),
    ("plan", ["--config", "demo", "--nodes", "1", "--gflops-per-core", "1", "--measure-steps",
              '--data.path="s3://catneuron/data"']),
], ids=["train-run-dir", "config", "plan-measure-steps"])
def test_a_store_that_does_not_answer_is_one_line(s3_store, tmp_path, monkeypatch, capsys,
                                                  job, argv):
    """Before: pyarrow's OSError and its traceback, from train's look for an earlier run in the
    run folder, from reading a config in the store and from plan's dataset, all of which came
    before the storage check (each case waits out pyarrow's retries, about 6 s)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_address())
    assert _run(job, argv) == 2
    err = capsys.readouterr().err
    assert "cannot reach the bucket 'catneuron'" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["train", "evaluate", "ingest"])
def test_a_region_lookup_that_fails_is_one_line(tmp_path, monkeypatch, capsys, case):
    """Without AWS_ENDPOINT_URL pyarrow first looks up the bucket's region (a request to AWS,
    made here to fail as it does off the network: its OSError is pyarrow's own message).
    Before: that lookup came before the check's handler, so ``catneuron train --run-dir
    s3://nobucket/run`` ended in pyarrow's traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    def lookup_fails(bucket_uri, endpoint):
        raise OSError("When resolving region for bucket 'nobucket': AWS Error "
                      "NETWORK_CONNECTION during HeadBucket operation: curlCode: 6, "
                      "Could not resolve hostname")

    monkeypatch.setattr(storage, "_filesystem", lookup_fails)
    job, argv = CASES[case]
    assert _run(job, [a.replace("LOCATION", "s3://nobucket/run") for a in argv]) == 2
    err = capsys.readouterr().err
    assert "s3://nobucket/run: cannot reach the bucket 'nobucket' (When resolving region" in err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
