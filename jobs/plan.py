"""``catneuron plan``: size a config on N nodes (parameters, memory per shard, FLOPs and bytes per
step, estimated epoch time from this machine's measured per-core throughput).

A small stack is better sized by its measured step than by its FLOPs: ``--measure-steps`` runs
each stage's step on one core over the config's dataset (input included), ``--call-ms``
adds a worker's time per call to a shard, and ``--fanout-ms`` a synchronous step's time for each
worker beyond the first (``benchmarks/plan_check.py`` measures all three).

Examples::

    catneuron plan --config le2012 --nodes 1000
    catneuron plan --config demo --nodes 2 --cores-per-node 1 --json
    catneuron plan --config demo --nodes 3 --cores-per-node 1 --measure-steps --call-ms 1.2 \\
        --fanout-ms 0.5
"""

from __future__ import annotations

import json
import sys

from jobs.errors import ArgumentParser, UserError, command, location

_SHORT = {"worker": "worker", "worker network": "worker net",
          "parameter-server network": "PS net"}


def _si(x: float, unit: str = "") -> str:
    """1.2e9 -> '1.20 G'."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.2f} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _duration(s: float) -> str:
    """Seconds as a readable duration."""
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def _periods(value: int | list[int]) -> str:
    """``4`` or, given per stage, ``4 / 1 (stage 0 / 1)``."""
    if isinstance(value, int):
        return str(value)
    stages = " / ".join(str(k) for k in range(len(value)))
    return f"{' / '.join(map(str, value))} (stage {stages})"


def _schedule(p: dict) -> str:
    """How the workers and shards talk, as the plan sized it."""
    if p["mode"] == "sync":
        return (f"synchronous: an update and the parameters every step "
                f"({p['transfer_dtype']} on the wire)")
    return (f"async: push every {_periods(p['n_push'])}, fetch every {_periods(p['n_fetch'])} "
            f"steps ({p['transfer_dtype']} on the wire)")


def _fanout(p: dict) -> str:
    """The sync fan-out the plan counted, as a clause (empty when it counted none)."""
    if p["mode"] != "sync" or not p["fanout_s"]:
        return ""
    return (f"{p['fanout_s'] * 1e3:g} ms a sync step per worker beyond the first "
            f"({(p['n_workers'] - 1) * p['fanout_s'] * 1e3:.3g} ms here); ")


def render(p: dict) -> str:
    """The plan as a human-readable table."""
    src = p["gflops_per_core_source"]
    lines = [
        f"{p['nodes']} nodes x {p['cores_per_node']} cores: {p['n_workers']} worker replicas, "
        f"{p['n_ps_shards']} parameter-server shards; batch {p['batch_size']}, {_schedule(p)}",
        f"per-core CD throughput {p['gflops_per_core']:.2f} GFLOP/s ({src}); network "
        f"{p['bandwidth_gbps']:g} Gbit/s per node; {p['call_s'] * 1e3:g} ms per shard call; "
        f"{_fanout(p)}epoch = {p['frames_per_epoch']:,} frames",
        *[f"stage {s['stage']}: step measured on one core (input included), not FLOPs / rate"
          for s in p["stages"] if s["compute_source"].startswith("measured")],
        "",
        f"{'stage':>5} {'input':>12} {'params':>10} {'shard mem':>10} {'replica mem':>11} "
        f"{'FLOP/step':>10} {'bytes/step':>10} {'step':>9} {'bound':>14} {'epoch':>9} "
        f"{'1st epoch':>9}",
    ]
    for s in p["stages"]:
        c, h, w = s["input_shape"]
        lines.append(
            f"{s['stage']:>5} {f'{c}x{h}x{w}':>12} {_si(s['n_params']):>10} "
            f"{_si(s['shard_memory_bytes'], 'B'):>10} {_si(s['replica_memory_bytes'], 'B'):>11} "
            f"{_si(s['flops_per_step_per_worker']):>10} "
            f"{_si(s['bytes_per_step_per_worker'], 'B'):>10} {_duration(s['step_s']):>9} "
            f"{_SHORT[s['bound']]:>14} {_duration(s['epoch_s']):>9} "
            f"{_duration(s['first_epoch_s']):>9}")
    lines += ["", f"total parameters {p['total_params']:,} ({_si(p['total_params'])}); one epoch "
              f"of every stage {_duration(p['epoch_s_all_stages'])}"]
    if not all(s["replica_fits_node"] for s in p["stages"]):
        lines.append("note: a replica does not fit one node's memory: split it over nodes "
                     "(model parallelism, as Le et al. did)")
    return "\n".join(lines)


def _as_flag(message: str, names) -> str:
    """``bandwidth_gbps=0.0: ...`` -> ``--bandwidth-gbps=0.0: ...`` for the sizing inputs
    (``call_s`` and ``fanout_s`` are given in milliseconds, ``--call-ms`` and ``--fanout-ms``)."""
    name, sep, rest = message.partition("=")
    if name in ("call_s", "fanout_s"):
        return f"--{name[:-2]}-ms: must be a number >= 0"
    return f"--{name.replace('_', '-')}{sep}{rest}" if name in names else message


def measured_steps(config) -> dict[int, float]:
    """Each stage's step on one core over ``config.data.path`` (FileNotFoundError without
    it), with a line on standard error while it runs."""
    from pathlib import Path

    from cluster.plan_rates import measure_stage_steps
    from pipeline import storage

    storage.check_location(config.data.path)  # a URI's bucket exists and answers
    if "://" not in config.data.path and not Path(config.data.path).exists():
        raise FileNotFoundError(f"--measure-steps reads data.path={config.data.path!r}: no "
                                "such dataset (catneuron ingest, or --data.path=...)")
    print(f"timing each stage's step on one core over {config.data.path} ...", file=sys.stderr)
    return measure_stage_steps(config)


@command("catneuron plan")
def main(argv: list[str] | None = None) -> int:
    """Print the plan (a table, or JSON with --json); 2 on a bad config (:mod:`jobs.errors`)."""
    from jobs.config import load

    p = ArgumentParser(prog="catneuron plan",
                       description=__doc__.split("\n\n")[0].replace("``", ""),
                       epilog="Any config field can be overridden: --section.key=value "
                              "(--train.mode=sync).")
    p.add_argument("--config", type=location, required=True,
                   help="TOML job config, or a shipped one by name: demo, le2012")
    p.add_argument("--nodes", type=int, required=True, help="cluster size")
    p.add_argument("--cores-per-node", type=int, default=16,
                   help="cores per node [16, as Le et al.]")
    p.add_argument("--frames", type=int, default=10_000_000,
                   help="frames per epoch [10,000,000, as Le et al.]")
    p.add_argument("--gflops-per-core", type=float,
                   help="skip the measurement, use this figure (default: measured on one core "
                        "of this machine: 1 torch thread and 1 numba thread)")
    p.add_argument("--bandwidth-gbps", type=float, default=10.0,
                   help="network per node, Gbit/s [10]")
    p.add_argument("--node-memory-gb", type=float, default=64.0,
                   help="memory per node, GB, for the replica-fits check [64]")
    p.add_argument("--call-ms", type=float, default=0.0,
                   help="a worker's time per call to a shard (serialising, the round trip; "
                        "default 0: not counted)")
    p.add_argument("--fanout-ms", type=float, default=0.0,
                   help="a synchronous step's extra time for each worker beyond the first (the "
                        "driver's call to each, each shard reading each update; default 0)")
    p.add_argument("--measure-steps", action="store_true",
                   help="time each stage's step on one core over the config's data.path "
                        "(input included) instead of its FLOPs over the per-core rate")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    args, rest = p.parse_known_args(argv)
    from cluster.plan import check_inputs, plan

    sizes = dict(nodes=args.nodes, cores_per_node=args.cores_per_node, frames=args.frames,
                 gflops_per_core=args.gflops_per_core, bandwidth_gbps=args.bandwidth_gbps,
                 node_memory_gb=args.node_memory_gb, call_s=args.call_ms / 1e3,
                 fanout_s=args.fanout_ms / 1e3)
    try:
        check_inputs(**sizes)
        config = load(args.config, rest)
        steps = measured_steps(config) if args.measure_steps else None
    except (FileNotFoundError, ValueError) as exc:  # ConfigError is a ValueError
        raise UserError(_as_flag(str(exc), sizes)) from None
    try:
        result = plan(config, **sizes, stage_steps_s=steps)
    except ValueError as exc:  # a figure past float range (cluster.plan.check_finite)
        raise UserError(str(exc)) from None
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
