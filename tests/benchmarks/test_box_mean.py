"""benchmarks/box_mean.py: the kernel and avg_pool2d give the same floats at every size, and
a run's stage-0 reads are the same with either."""

from __future__ import annotations

import json

from tests.benchmarks import load


def test_kernels_and_reads_agree(tmp_path):
    from tests.jobs.test_evaluate import KINDS, _run_folder

    run = _run_folder(tmp_path, KINDS)
    out = tmp_path / "box_mean.json"
    assert load("box_mean").main(["--run", str(run), "--frames", "16", "--batch", "4",
                                  "--field", "3", "--repeat", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for threads in ("threads_1", "threads_2"):
        assert [k["side"] for k in result[threads]["kernels"]] == [72, 58, 48, 40]
        assert all(k["equal"] for k in result[threads]["kernels"])
        assert result[threads]["reads"]["equal"] is True
        assert result[threads]["reads"]["frames"] == 16
