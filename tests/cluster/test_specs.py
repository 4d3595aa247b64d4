"""The shipped cluster specs parse and run the same entry points a laptop runs."""

import importlib.util
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "cluster" / "specs"


def test_ray_cluster_launcher_spec():
    spec = yaml.safe_load((SPECS / "ray-cluster.yaml").read_text())
    assert spec["head_node_type"] in spec["available_node_types"]
    assert any("ray start --head" in c for c in spec["head_start_ray_commands"])
    assert all("torch>=2.5,<2.14" in c for c in spec["setup_commands"] if "pip install" in c)


def test_kuberay_rayjob_entrypoint_is_a_real_job_with_a_shipped_config():
    spec = yaml.safe_load((SPECS / "rayjob.yaml").read_text())
    assert spec["apiVersion"] == "ray.io/v1" and spec["kind"] == "RayJob"
    argv = shlex.split(spec["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"]
    assert importlib.util.find_spec(argv[2]) is not None, argv[2]
    config = argv[argv.index("--config") + 1]
    assert (ROOT / config).is_file()
    # Overrides in the entrypoint must name real config fields: load them for real.
    from jobs.config import load

    overrides = [a[2:] for a in argv if re.match(r"--\w+\.\w+=", a)]
    cfg = load(ROOT / config, overrides)
    assert cfg.data.path == "/data/le2012/frames"
