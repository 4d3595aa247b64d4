"""Job configs: defaults < file < command line; loud, named errors before anything starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.config import ConfigError, JobConfig, dumps, load, toml_string

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, text):
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    demo = load(ROOT / "configs/demo.toml")
    assert demo.model.input_size == 64 and len(demo.model.stages) == 2
    paper = load(ROOT / "configs/le2012.toml")
    assert paper.model.input_size == 200 and len(paper.model.stages) == 3
    assert {(s.field, s.n_maps, s.pool) for s in paper.model.stages} == {(18, 8, 5)}


def test_precedence_defaults_file_cli(tmp_path):
    path = _write(tmp_path, "[train]\nsteps = 7\nn_workers = 3\n[update]\nlearning_rate = 0.5\n")
    cfg = load(path, ["--train.n_workers=4", "update.method=\"adagrad\""])
    assert cfg.train.steps == 7  # file over default
    assert cfg.train.n_workers == 4  # command line over file
    assert cfg.update.learning_rate == 0.5 and cfg.update.method == "adagrad"
    assert cfg.train.n_ps_shards == JobConfig().train.n_ps_shards  # default kept
    staged = load(path, ["--model.stages[1].n_maps=3", "model.stages.0.stride=1"])
    assert staged.model.stages[1].n_maps == 3 and staged.model.stages[0].stride == 1


def test_resolved_config_round_trips(tmp_path):
    cfg = load(ROOT / "configs/demo.toml",
               ["train.steps=5", "model.stages[0].sparsity_cost=0.2"])
    again = load(_write(tmp_path, dumps(cfg)))
    assert again == cfg


def test_periods_per_stage(tmp_path):
    cfg = load(ROOT / "configs/demo.toml", ["train.n_push=[4, 1]", "train.n_fetch=[8, 1]"])
    assert (cfg.train.n_push, cfg.train.n_fetch) == ((4, 1), (8, 1))
    first, second = cfg.for_stage(0).train, cfg.for_stage(1).train
    assert (first.n_push, first.n_fetch, second.n_push, second.n_fetch) == (4, 8, 1, 1)
    assert first.steps == cfg.train.steps and cfg.for_stage(1).model == cfg.model
    assert load(_write(tmp_path, dumps(cfg))) == cfg
    fewer = load(ROOT / "configs/demo.toml", ["model.stages=[{kind=\"tied\", field=7}]",
                                               "train.stages=1", "train.n_push=[4, 1]"])
    assert fewer.for_stage(0).train.n_push == cfg.train.n_push[0]  # the rest is not used
    one = load(ROOT / "configs/demo.toml", ["train.n_push=2", "train.n_fetch=2"])
    assert one.for_stage(1).train.n_push == 2


def test_a_config_written_by_an_older_catneuron_loads(tmp_path):
    """A run's resolved config.toml from before ``[ingest.decode]`` took the model's names."""
    import json

    record = ROOT / "benchmarks/results/face_demo/face_demo_avg128_seed2.json"
    old = json.loads(record.read_text())["config_text"]
    assert "\nsize = 64\ngrey = true\n" in old
    cfg = load(_write(tmp_path, old))
    assert (cfg.ingest.decode.input_size, cfg.ingest.decode.channels) == (64, 1)
    assert cfg.train.seed == 2 and cfg.model.stages[1].n_maps == 128
    colour = load(_write(tmp_path, "[ingest.decode]\nsize = 32\ngrey = false\n"))
    assert (colour.ingest.decode.input_size, colour.ingest.decode.channels) == (32, 3)


@pytest.mark.parametrize("text, overrides, field", [
    ("[train]\nn_wrokers = 2\n", [], "train.n_wrokers"),
    ("[trian]\nsteps = 2\n", [], "trian"),
    ("[train]\nn_workers = \"two\"\n", [], "train.n_workers"),
    ("[train]\nmode = \"downpour\"\n", [], "train.mode"),
    ("[update]\nlearning_rate = true\n", [], "update.learning_rate"),
    ("", ["model.stages[0].field=80"], "stages[0].field=80 > input 64"),
    ("", ["model.stages[0].fields=8"], "model.stages[0].fields"),
    ("", ["train.n_workers=0"], "n_workers=0"),
    ("", ["sim.kill_worker=5"], "sim.kill_worker=5"),
    ("", ["train.steps"], "train.steps"),
    ("", ["train.n_push=[4]"], "have 1 entries; give one per stage of model.stages (2)"),
    ("", ["train.n_fetch=[0, 1]"], "n_fetch=[0, 1]: give one period >= 1"),
    ("", ["train.n_push=[]"], "n_push=[]: give one period >= 1"),
    ("", ["train.steps.x=1"], "train.steps.x: steps holds no key 'x'"),
    ("", ["model.stages[0].field.x.y=3"], "field holds no key 'x'"),
    ("", ["model.stages.x=3"], "stages holds no key 'x'"),
    ("", ['train.sync_transport="pigeon"'], "train.sync_transport"),
    ("", ['train.sync_transport="compiled"', "train.max_in_flight=10"],
     "max_in_flight=10: at most 9"),
])
def test_bad_config_names_the_field(tmp_path, text, overrides, field):
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), overrides)
    assert field in str(info.value)


def test_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/demo.toml"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize("args, message", [
    (["--train.n_wrokers=2"], "train.n_wrokers"),
    (["--model.stages[0].field=80"], "stages[0].field=80 > input 64"),
    (["--workers", "x"], "invalid int value"),
])
def test_train_cli_fails_before_ray_starts(tmp_path, args, message):
    """Exit status 2 with the field named, and no Ray instance ever started."""
    result = subprocess.run(
        [sys.executable, "-m", "jobs.train", "--config", str(ROOT / "configs/demo.toml"),
         "--run-dir", str(tmp_path / "run"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Started a local Ray instance" not in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


def test_train_cli_checks_the_dataset_against_the_model(tmp_path):
    sys.path.insert(0, str(ROOT))
    from tests.cluster.data import make_dataset

    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=20, size=16, shard_rows=10)
    from jobs.train import main

    assert main(["--config", str(ROOT / "configs/demo.toml"), f'--data.path="{data}"',
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    assert main(["--config", str(ROOT / "configs/demo.toml"), f'--data.path="{tmp_path}/none"',
                 "--run-dir", str(tmp_path / "run")]) == 2


def test_a_bare_name_is_a_shipped_config_whatever_the_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # as `catneuron demo --out demo` leaves it
    (tmp_path / "le2012").write_text("[train]\nsteps = 7\n")
    assert load("demo") == load(ROOT / "configs/demo.toml")
    assert load("le2012") == load(ROOT / "configs/le2012.toml")
    assert load("./le2012").train.steps == 7  # a path is a file
    (tmp_path / "mine").write_text("[train]\nsteps = 5\n")
    with pytest.raises(ConfigError, match=r"no shipped config .* \(\./mine\)"):
        load("mine")


@pytest.mark.parametrize("key", ["model.stages[²].n_maps", "model.stages[1.5].n_maps",
                                 "train..steps", "train.steps[]"])
def test_a_malformed_override_key_is_named(key):
    with pytest.raises(ConfigError, match=r"override key .* is malformed"):
        load("demo", [f"--{key}=3"])


def test_indexing_an_unknown_key_says_unknown_not_out_of_range():
    with pytest.raises(ConfigError, match="unknown key 'newlist'"):
        load("demo", ["--train.newlist[0]=1"])


@pytest.mark.parametrize("text", ["a\nb", "tab\there", "bell\x07", "del\x7f", 'q"\\'])
def test_control_characters_in_a_string_survive_the_round_trip(tmp_path, text):
    """A newline in a path once made the run's own config.toml unreadable."""
    config = load(None, [f"--train.run_dir={toml_string(text)}"])
    assert config.train.run_dir == text
    (tmp_path / "c.toml").write_text(dumps(config))
    assert load(tmp_path / "c.toml").train.run_dir == text


def test_a_folder_or_a_binary_file_as_config_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        load(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"bin.toml: not a UTF-8 text file"):
        load(tmp_path / "bin.toml")


@pytest.mark.parametrize("override, message", [
    ("train.seed=-1", "seed=-1: must be from 0 to 2**32 - 1"),
    ("train.seed=4611686018427387904", "must be from 0 to 2**32 - 1"),
    ("sim.num_cpus=-3", "num_cpus=-3.0 must be >= 0"),
    ("sim.worker_cpus=-1", "worker_cpus=-1.0 must be >= 0"),
    ("sim.slow_worker_delay_s=-1", "slow_worker_delay_s=-1.0 must be >= 0"),
    ("sim.kill_worker_at_step=-5", "kill_worker_at_step=-5 must be >= 0, or -1"),
    ("train.n_ps_shards=33", "stage 0's parameters split into only 32 rows"),
])
def test_settings_that_failed_only_after_ray_started_are_refused_at_load(override, message):
    """Each of these once hung on an actor that never started, or gave a traceback once Ray
    was up and the run folder written."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("demo", [override])
    assert load("demo", ["train.n_ps_shards=32"]).train.n_ps_shards == 32


@pytest.mark.parametrize("override, field", [
    ("update.learning_rate=1" + "0" * 400, "update.learning_rate"),
    ("sim.num_cpus=1" + "0" * 400, "sim.num_cpus"),
    ("model.stages[0].n_maps=1" + "0" * 30, "model.stages[0].n_maps"),
])
def test_an_integer_past_64_bits_is_named_not_a_traceback(override, field):
    """TOML's integers are 64-bit; a longer one once raised OverflowError (a traceback) in
    float() at load, or in numpy when `catneuron plan` sized the stage."""
    with pytest.raises(ConfigError, match=re.escape(f"{field}: an integer of")):
        load("demo", [override])


def test_a_config_that_cannot_be_read_is_one_line(tmp_path):
    """An OSError other than a missing file (here a name past the filesystem's 255 bytes; no
    permission to read is the same path) once left `--config` with a traceback."""
    with pytest.raises(ConfigError, match="cannot be read: File name too long"):
        load(tmp_path / ("a" * 300 + ".toml"))
    result = subprocess.run(
        [sys.executable, "-m", "jobs.plan", "--config", str(tmp_path / ("a" * 300 + ".toml")),
         "--nodes", "1", "--gflops-per-core", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    """Notepad and other Windows editors start a UTF-8 file with a byte-order mark; tomllib
    stopped at it ("Invalid statement (at line 1, column 1)")."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nsteps = 7\n")
    assert load(path).train.steps == 7


@pytest.mark.parametrize("value", ["0.5", "1.5"])
def test_a_fraction_of_a_cpu_for_the_local_ray_is_refused(value):
    """``ray.init`` takes whole CPUs: ``int()`` once cut 1.5 to 1, and 0.5 to 0, every core,
    the opposite of what was asked, without a word."""
    with pytest.raises(ConfigError, match=re.escape(f"num_cpus={value}: give a whole number")):
        load("demo", [f"sim.num_cpus={value}"])
    assert load("demo", ["sim.num_cpus=2.0"]).sim.num_cpus == 2


@pytest.mark.parametrize("override, message", [
    ("train.n_fetch[1]=4", "train.n_fetch is 1, not a list to index; give it whole "
                           "(--train.n_fetch=...)"),
    ("model.stages[0].sizes[0]=32", "'sizes', or one the config leaves at its default"),
    ("model.stages[5].field=3", "index 5 is out of range (model.stages has 2 entries)"),
])
def test_an_index_that_cannot_be_used_says_why(override, message):
    """These once read "index 1 is out of range" for a value that is no list, and "unknown key
    'sizes'" for a valid key the demo's stage 0 leaves at its default."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("demo", [override])
