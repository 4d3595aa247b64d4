"""The shipped cluster specs name only what exists, install every runtime requirement, run the
Ray that pyproject.toml asks for, and their commands parse with catneuron's own parsers."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "cluster" / "specs"
DOCKERFILE = ROOT / "cluster" / "Dockerfile"
IMAGE_ROOT = "/home/ray/catneuron"  # where cluster/Dockerfile puts the source tree

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}


def _launcher() -> dict:
    return yaml.safe_load((SPECS / "ray-cluster.yaml").read_text())


def _rayjob() -> dict:
    return yaml.safe_load((SPECS / "rayjob.yaml").read_text())


def _ray_image_version(image: str) -> Version:
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py3\d+(-cpu)?", image)
    assert match, f"{image} is not one of Ray's release images"
    return Version(match[1])


def _dockerfile_base() -> str:
    return re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)[1]


def test_images_run_the_ray_that_pyproject_asks_for():
    versions = {_ray_image_version(_launcher()["docker"]["image"]),
                _ray_image_version(_dockerfile_base()),
                Version(_rayjob()["spec"]["rayClusterSpec"]["rayVersion"])}
    assert len(versions) == 1, versions
    assert versions.pop() in REQUIREMENTS["ray"].specifier


def _pip_installed(commands: list[str]) -> dict[str, Requirement]:
    """Requirements named by ``pip install`` in shell commands."""
    out = {}
    for command in commands:
        words = shlex.split(command)
        if words[:2] != ["pip", "install"]:
            continue
        for word in words[2:]:
            if not word.startswith("-"):
                req = Requirement(word)
                out[req.name] = req
    return out


def test_launcher_installs_every_runtime_requirement():
    installed = _pip_installed(_launcher()["setup_commands"])
    for name, req in REQUIREMENTS.items():
        if name == "ray":  # the image's
            continue
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue  # e.g. tomli, only below Python 3.11 (the image's Python is 3.11)
        assert name in installed, f"ray-cluster.yaml's setup_commands do not install {name}"
        assert installed[name].specifier == req.specifier, (name, installed[name], req)


def test_dockerfile_installs_the_project_and_copies_every_package():
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN pip install [^\n]*\s\.(\s|$)", text, re.M), "pip install . missing"
    copied = set(re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M))
    copied = {p for line in copied for p in line.split()}
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    assert packages | {"pyproject.toml"} <= copied, copied  # configs/ is a package too
    assert re.search(rf"^WORKDIR {IMAGE_ROOT}$", text, re.M)


def test_rayjob_runs_the_image_built_from_the_dockerfile():
    spec = _rayjob()
    assert spec["apiVersion"] == "ray.io/v1" and spec["kind"] == "RayJob"
    cluster = spec["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert images == {f"catneuron:{PYPROJECT['project']['version']}"}
    assert "runtimeEnvYAML" not in spec["spec"]  # nothing fetched from elsewhere
    assert "docker build -f cluster/Dockerfile -t catneuron:" in (SPECS / "rayjob.yaml").read_text()


def _check_train_argv(argv: list[str]):
    """Parse a train job's arguments with its own parser and load its config for real."""
    from jobs.train import resolve

    config, _ = resolve(argv)
    return config


def test_rayjob_entrypoint_parses_with_the_train_job_and_loads_its_config():
    argv = shlex.split(_rayjob()["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.train"]
    argv = [a.replace(IMAGE_ROOT, str(ROOT)) for a in argv[3:]]
    config = _check_train_argv(argv)
    assert config.data.path == "s3://catneuron/le2012/data"
    assert config.train.run_dir == "s3://catneuron/runs/le2012"
    assert config.model.input_size == 200


def _launcher_commands() -> list[list[str]]:
    """The ``catneuron submit`` commands in ray-cluster.yaml's header."""
    lines = (SPECS / "ray-cluster.yaml").read_text().splitlines()
    return [shlex.split(line.lstrip("# ")) for line in lines
            if line.lstrip("# ").startswith("catneuron submit")]


@pytest.mark.parametrize("index", range(2))
def test_launcher_submit_commands_parse_with_catneuron(index):
    from jobs.ingest import build_parser as ingest_parser
    from jobs.submit import build_parser as submit_parser

    commands = _launcher_commands()
    assert len(commands) == 2
    args = submit_parser().parse_args(commands[index][2:])
    assert args.no_pip
    if args.job == "train":
        config = _check_train_argv(args.args)
        assert config.data.path.startswith("s3://") and config.train.run_dir.startswith("s3://")
    else:
        assert args.job == "ingest"
        ingest = ingest_parser().parse_args(args.args)
        assert str(ingest.out).startswith("s3:")
