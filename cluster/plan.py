"""Sizing a job on paper: parameters, memory per shard, FLOPs and bytes per step, epoch time.

For each stage of the stack (a locally connected RBM with ``P`` positions, ``K`` maps per
position and ``D = C*r*r`` inputs per field; Le et al. 2012's 200x200x3 input, 18x18 fields,
8 maps and 3 stages give about 1.2e9 parameters):

- parameters: ``W`` = P*K*D, ``c`` = P*K, ``b`` = C*H*W;
- CD-k FLOPs per frame: every pass through the weights (up: P(h|v), down: E[v|h]) costs 2*P*K*D
  multiply-adds; CD-k makes ``1 + 2k`` passes plus two for the gradient's outer products
  (positive and negative statistics), so ``(3 + 2k) * 2*P*K*D``, plus one forward pass of every
  stage below (at each pyramid size). A tied stage's parameters are one bank ``K*D``; k-means
  learners and competitive stages train on ``rows_per_frame`` sampled rows per frame (whitening
  ``D*d``, then 2 passes for k-means or ``3 + k`` for the one-of-K RBM over ``K*d``: its down
  pass takes the sampled state's row of ``W``, a gather, not a product);
- with the stage-input cache (a stage above 0, ``train.read_cache_mb > 0``): a frame the cache
  holds costs the learner only; the stages below and the stage's encoding (a competitive
  stage's whitening of every window) are paid once per frame in the first epoch
  (``first_epoch_s``), and each step for the share of frames past the budget
  (:func:`frame_flops`);
- memory per shard: its slices of the parameters, and one optimiser state per parameter when
  it applies the updates (:func:`shard_optimiser_states`);
- memory per replica: parameters, update and activations, plus the cache of what the stage
  reads from each of its frames (:func:`read_cache_bytes`, capped by ``train.read_cache_mb``);
- bytes per worker step: the update pushed every ``n_push`` steps and the parameters fetched
  every ``n_fetch`` steps, in ``train.transfer_dtype`` (sync mode: both every step, in float32,
  :func:`wire_schedule`);
- time per step: the largest of a replica's own time, its network transfer, and the parameter
  servers' share of everyone's transfers (all at ``bandwidth_gbps`` per node), assuming the
  transfers overlap the work (Downpour). A replica's own time is its compute, FLOPs over the
  measured per-core GFLOP/s (or, given ``stage_steps_s``, the stage's whole step measured in
  one process on one core, input included: :func:`cluster.plan_rates.measure_stage_steps`),
  divided by the cores of its node; plus ``call_s`` for each call to a shard
  (:func:`shard_calls_per_step`); and in sync mode ``fanout_s`` for every worker beyond the
  first, since one driver sends each worker its call and each shard takes each worker's update
  in turn (:func:`sync_fanout_s`: once for every worker beyond the first, so a sync step on
  hundreds of workers waits hundreds of fan-outs);
- time per epoch: ``frames / (n_workers * batch_size / step_time)``.

Nodes are split into ``n_ps_shards`` parameter-server nodes and one model replica per remaining
node (Le et al. also split each replica over machines by model parallelism; a replica whose
parameters exceed a node's memory is flagged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from cluster.plan_rates import MEASURED_HOW, measure_gflops_per_core
from cluster.sharding import WIRE_BYTES, ShardLayout
from models.rbm.local import positions
from models.read_cache import bytes_per_frame, encoded_shapes


@dataclass(frozen=True)
class StagePlan:
    """Sizes of one stage (see the module docstring for the formulas)."""

    stage: int
    input_shape: tuple[int, int, int]
    n_positions: int
    n_maps: int
    fan_in: int
    n_params: int
    flops_per_frame: float
    largest_shard_params: int
    cached_flops_per_frame: float = 0.0
    encode_flops_per_frame: float = 0.0


def shard_rows(model: Any, stage: int) -> int:
    """How many rows (positions, maps or units) stage ``stage``'s parameters split into: at
    most this many parameter-server shards can hold a part of them
    (:meth:`cluster.sharding.ShardLayout.plan`)."""
    st = model.stages[stage]
    shapes = LEARNER_SIZES[st.kind](st, model.input_shapes()[stage], st.k)[0]
    return next(iter(shapes.values()))[0]


def stage_plans(model: Any, n_ps_shards: int, k_override: int | None = None) -> list[StagePlan]:
    """Per-stage sizes for a ``StackConfig`` split over ``n_ps_shards`` shards: the learner's
    parameters and the FLOPs per training frame (the stages below run forward first, at every
    pyramid size of a competitive stage; then the stage's own training)."""
    out = []
    for i, st in enumerate(model.stages):
        shape = model.input_shapes()[i]
        shapes, flops, rows, fan_in = LEARNER_SIZES[st.kind](st, shape, k_override or st.k)
        below = sum(forward_flops(model, i, (model.channels, s, s))
                    for s in (st.sizes or (model.input_size,)))
        encode, sampled = encoding_flops(model, i)
        n = sum(math.prod(v) for v in shapes.values())
        layout = ShardLayout.plan(shapes, min(n_ps_shards, next(iter(shapes.values()))[0]))
        largest = max(layout.numel(j) for j in range(layout.n_ps_shards))
        out.append(StagePlan(i, shape, rows, st.n_maps, fan_in, n,
                             float(flops + sampled + below), largest, float(flops),
                             float(below + encode)))
    return out


def encoding_flops(model: Any, stage: int) -> tuple[float, float]:
    """A competitive stage's whitening as a direct convolution counts it, per frame (the FFT
    form a CPU runs, :mod:`models.kernels.fft_conv`, does fewer): (every window of every level, as
    :class:`models.read_cache.ReadCache` encodes a frame once; the ``rows_per_frame`` windows
    sampled, as a read without the cache whitens them). Other kinds encode nothing: (0, 0)."""
    st = model.stages[stage]
    if st.kind != "competitive":
        return 0.0, 0.0
    per_window = 2.0 * model.level_shapes(stage)[0][0] * st.field * st.field * st.dims
    windows = sum(h * w for _, h, w in encoded_shapes(model, stage))
    return windows * per_window, st.rows_per_frame * per_window


def forward_flops(model: Any, stage: int, shape: tuple[int, int, int]) -> float:
    """Multiply-adds x 2 of stages ``0..stage-1`` on one input of ``shape``."""
    from models.stages.config import stage_shapes

    total = 0.0
    for st in model.stages[:stage]:
        c, h, _ = shape
        grid = positions(h, st.field, st.stride)
        total += 2.0 * grid * grid * st.n_maps * c * st.field * st.field
        shape = stage_shapes(st, shape)["output"]
    return total


def _local_sizes(st, shape, k):
    c, h, w = shape
    side = positions(h, st.field, st.stride)
    p, kk, d = side * side, st.n_maps, c * st.field * st.field
    return {"W": (p, kk, d), "c": (p, kk), "b": (c, h, w)}, (3 + 2 * k) * 2 * p * kk * d, p, d


def _tied_sizes(st, shape, k):
    c, h, _ = shape
    d, kk = c * st.field * st.field, st.n_maps
    if st.learner == "kmeans":  # rows: whiten (d x d), assign (K x d), sums (K x d)
        return {"W": (kk, d)}, st.rows_per_frame * 2 * (d * d + 2 * kk * d), st.rows_per_frame, d
    side = positions(h, st.field, st.stride)
    p = side * side
    return ({"W": (kk, c, st.field, st.field), "c": (kk,), "b": (c,)},
            (3 + 2 * k) * 2 * p * kk * d, p, d)


def _competitive_sizes(st, shape, k):  # the learner on whitened rows (whitening: encoding_flops)
    c = shape[0]
    d_in, d, kk, rows = c * st.field * st.field, st.dims, st.n_maps, st.rows_per_frame
    shapes = {"W": (kk, d)} if st.learner == "kmeans" else {"W": (kk, d), "b": (d,), "c": (kk,)}
    passes = 2 if st.learner == "kmeans" else 3 + k  # the one-of-K down pass gathers rows
    return shapes, rows * 2 * passes * kk * d, rows, d_in


LEARNER_SIZES = {"local": _local_sizes, "tied": _tied_sizes, "competitive": _competitive_sizes}


def read_cache_bytes(config: Any, stage: int, frames_per_worker: float) -> int:
    """A worker's :class:`models.read_cache.ReadCache` when it has seen all its frames: what
    stage ``stage`` reads per frame (float32, every pyramid level) times its frames, capped by
    ``train.read_cache_mb``; stage 0 keeps none."""
    if stage == 0:
        return 0
    per_frame = bytes_per_frame(config.model, stage)
    return int(min(per_frame * frames_per_worker, config.train.read_cache_mb * 2**20))


def cached_share(config: Any, stage: int, cache_bytes: int, frames_per_worker: float) -> float:
    """Share of a worker's frames whose encoding its cache holds once it has read them all."""
    if cache_bytes == 0:
        return 0.0
    held = cache_bytes // bytes_per_frame(config.model, stage)
    return min(1.0, held / max(frames_per_worker, 1.0))


def frame_flops(sp: StagePlan, hit: float, cached: bool) -> float:
    """FLOPs a worker spends on one frame of a batch after its first epoch: with a cache
    (``cached``), the learner on the cached encoding, plus the encoding for the ``1 - hit`` of
    frames it cannot hold; without, everything each time (:attr:`StagePlan.flops_per_frame`)."""
    if not cached:
        return sp.flops_per_frame
    return sp.cached_flops_per_frame + (1.0 - hit) * sp.encode_flops_per_frame


def shard_optimiser_states(train: Any) -> int:
    """State tensors a shard keeps per parameter: one (momentum velocity or Adagrad sums) when
    it applies updates; none when async workers push their own changes (``push = "delta"`` or
    ``"average"``: the shard adds them, the optimiser state lives on the replicas)."""
    return 0 if train.mode == "async" and train.push in ("delta", "average") else 1


def wire_schedule(train: Any) -> Any:
    """The periods and wire type a worker's transfers follow: the config's in async mode; in
    sync mode an update sent and the parameters received every step, in float32
    (:meth:`cluster.worker.Worker.compute`, :meth:`cluster.ps.ParameterShard.apply_sync`),
    whatever ``n_push``, ``n_fetch`` and ``transfer_dtype`` say."""
    if train.mode != "sync":
        return train
    return replace(train, n_push=1, n_fetch=1, transfer_dtype="float32")


def shard_calls_per_step(train: Any, n_ps: int) -> float:
    """Calls on a worker's path per step: async, one per shard each push and each fetch, a
    push and a fetch due at the same step being one call (``cluster.downpour``); sync, the
    driver's call that hands the worker the parameters and takes its update, then each shard's
    apply, which the next step waits for (:func:`cluster.drivers.sync.submit_step`)."""
    if train.mode == "sync":
        return n_ps + 1.0
    both = 1 / math.lcm(train.n_push, train.n_fetch)
    return n_ps * (1 / train.n_push + 1 / train.n_fetch - both)


def sync_fanout_s(train: Any, n_workers: int, fanout_s: float) -> float:
    """What a synchronous step waits for the workers beyond the first: ``(n_workers - 1)
    fanout_s``. The driver submits every worker's call, and each shard's apply reads every
    worker's update, one after another (:func:`cluster.drivers.sync.submit_step`), so a step
    with more workers ends later even when they compute at once. Async workers wait for no
    other worker: 0."""
    return (n_workers - 1) * fanout_s if train.mode == "sync" else 0.0


def step_timing(periods: Any, n_params: int, compute_s: float, *, n_ps: int, n_workers: int,
                bw: float, call_s: float, fanout_s: float = 0.0) -> dict:
    """A worker's step under ``periods`` (:func:`wire_schedule`'s): its compute plus its calls to
    the shards and, in sync mode, the fan-out to the other workers (:func:`sync_fanout_s`), or
    the network when that is slower (its own link at ``bw`` bytes/s, or the shards' share of
    every worker's transfers), with the bytes it moves and what bounds it."""
    calls_s = shard_calls_per_step(periods, n_ps) * call_s
    fanout = sync_fanout_s(periods, n_workers, fanout_s)
    wire = WIRE_BYTES[periods.transfer_dtype] * n_params  # the parameters as sent
    bytes_step = wire * (1 / periods.n_push + 1 / periods.n_fetch)  # per worker per step
    worker_net_s = bytes_step / bw
    ps_net_s = n_workers * bytes_step / (n_ps * bw)  # every worker talks to every shard
    own_s = compute_s + calls_s + fanout
    step_s = max(own_s, worker_net_s, ps_net_s)
    if not 0 < step_s < math.inf:
        raise ValueError(f"the step time comes out as {step_s}: a rate too small or a time too "
                         "large to size with (--gflops-per-core, --bandwidth-gbps, --call-ms, "
                         "--fanout-ms)")
    bound = ("worker" if step_s == own_s else
             "worker network" if step_s == worker_net_s else "parameter-server network")
    return {"bytes_per_step_per_worker": bytes_step, "shard_calls_s_per_step": calls_s,
            "sync_fanout_s_per_step": fanout,
            "worker_network_s_per_step": worker_net_s, "ps_network_s_per_step": ps_net_s,
            "bound": bound, "step_s": step_s}


def _listed(value: int | tuple[int, ...]) -> int | list[int]:
    """A period as JSON: one for every stage, or a list with one per stage."""
    return list(value) if isinstance(value, tuple) else value


def check_inputs(*, nodes: int, cores_per_node: int, frames: int, gflops_per_core: float | None,
                 bandwidth_gbps: float, node_memory_gb: float, call_s: float = 0.0,
                 fanout_s: float = 0.0) -> None:
    """ValueError naming the first input that makes the sizing meaningless (a count below 1, a
    rate or memory that is not a positive finite number, a time that is not a number >= 0)."""
    for name, value in (("nodes", nodes), ("cores_per_node", cores_per_node),
                        ("frames", frames)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    for name, value in (("call_s", call_s), ("fanout_s", fanout_s)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value}: must be a number >= 0")
    rates = {"bandwidth_gbps": bandwidth_gbps, "node_memory_gb": node_memory_gb}
    if gflops_per_core is not None:
        rates["gflops_per_core"] = gflops_per_core
    for name, value in rates.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value}: must be a positive number")


def plan(config: Any, *, nodes: int, cores_per_node: int = 16, frames: int = 10_000_000,
         gflops_per_core: float | None = None, bandwidth_gbps: float = 10.0,
         node_memory_gb: float = 64.0, call_s: float = 0.0, fanout_s: float = 0.0,
         stage_steps_s: Mapping[int, float] | None = None) -> dict:
    """The whole sizing as a JSON-able dict (see the module docstring).

    ``gflops_per_core`` None measures it here (:func:`measure_gflops_per_core`: one core, CD-1
    at the demo geometry). ``stage_steps_s``: stage -> seconds of its step measured on one core
    (input included), used for those stages instead of FLOPs over the rate. ``call_s``: seconds
    of a worker's time per call to a shard; ``fanout_s``: seconds a sync step takes longer for
    each worker beyond the first (:func:`sync_fanout_s`). Raises ValueError for inputs
    :func:`check_inputs` refuses.
    """
    check_inputs(nodes=nodes, cores_per_node=cores_per_node, frames=frames,
                 gflops_per_core=gflops_per_core, bandwidth_gbps=bandwidth_gbps,
                 node_memory_gb=node_memory_gb, call_s=call_s, fanout_s=fanout_s)
    measured_steps = dict(stage_steps_s or {})
    tc = config.train
    measured = gflops_per_core is None
    if measured:
        gflops_per_core = measure_gflops_per_core()
    n_ps = min(tc.n_ps_shards, max(nodes - 1, 1))
    n_workers = max(nodes - n_ps, 1)
    batch = config.data.batch_size
    opt_state = shard_optimiser_states(tc)
    wire = wire_schedule(tc)
    bw = bandwidth_gbps * 1e9 / 8  # bytes/s per node
    seen_frames = frames * (2 if config.data.mirror else 1)  # a mirrored frame: another input
    stages = []
    for sp in stage_plans(config.model, n_ps):
        periods = wire_schedule(config.train.for_stage(sp.stage))  # the stage's own periods
        cache = read_cache_bytes(config, sp.stage, seen_frames / n_workers)
        hit = cached_share(config, sp.stage, cache, seen_frames / n_workers)
        flops_step = batch * frame_flops(sp, hit, cached=sp.stage > 0 and tc.read_cache_mb > 0)
        compute_s = (measured_steps.get(sp.stage, flops_step / (gflops_per_core * 1e9))
                     / cores_per_node)
        t = step_timing(periods, sp.n_params, compute_s, n_ps=n_ps, n_workers=n_workers, bw=bw,
                        call_s=call_s, fanout_s=fanout_s)
        step_s = t["step_s"]
        frames_per_s = n_workers * batch / step_s
        first_epoch_extra = (seen_frames / n_workers * hit * sp.encode_flops_per_frame
                             / (gflops_per_core * 1e9 * cores_per_node))
        stages.append({
            **asdict(sp),
            **memory_figures(sp, batch, cache, hit, opt_state, node_memory_gb),
            "flops_per_step_per_worker": flops_step,
            "bytes_per_step_per_worker": t["bytes_per_step_per_worker"],
            "compute_s_per_step": compute_s,
            "compute_source": ("measured step (one core, input included)"
                               if sp.stage in measured_steps else "FLOPs / per-core rate"),
            **{k: t[k] for k in ("shard_calls_s_per_step", "sync_fanout_s_per_step",
                                 "worker_network_s_per_step",
                                 "ps_network_s_per_step", "bound")},
            "n_push": periods.n_push, "n_fetch": periods.n_fetch,
            "step_s": step_s,
            "frames_per_s": frames_per_s,
            "epoch_s": frames / frames_per_s,
            "first_epoch_s": frames / frames_per_s + first_epoch_extra,
        })
    out = {
        "nodes": nodes, "cores_per_node": cores_per_node, "n_ps_shards": n_ps,
        "n_workers": n_workers, "batch_size": batch, "frames_per_epoch": frames,
        "gflops_per_core": gflops_per_core, "gflops_per_core_measured": measured,
        "gflops_per_core_source": MEASURED_HOW if measured else "given (--gflops-per-core)",
        "bandwidth_gbps": bandwidth_gbps, "call_s": call_s, "fanout_s": fanout_s,
        "mode": tc.mode, "n_push": _listed(wire.n_push), "n_fetch": _listed(wire.n_fetch),
        "transfer_dtype": wire.transfer_dtype,
        "total_params": sum(s["n_params"] for s in stages),
        "epoch_s_all_stages": sum(s["epoch_s"] for s in stages),
        "stages": stages,
    }
    check_finite(out)
    return out


def memory_figures(sp: StagePlan, batch: int, cache: int, hit: float, opt_state: int,
                   node_memory_gb: float) -> dict[str, Any]:
    """A stage's memory: its parameters, a shard's (with its optimiser states), and a
    replica's (parameters, update, activations of a batch, the stage-input cache)."""
    param_bytes = 4 * sp.n_params
    activations = 4 * batch * (sp.n_positions * sp.n_maps * 4 + 3 * sp.fan_in * sp.n_positions)
    replica = param_bytes * 2 + activations + cache
    return {"param_bytes": param_bytes,
            "shard_memory_bytes": 4 * sp.largest_shard_params * (1 + opt_state),
            "read_cache_bytes": cache, "read_cache_hit_share": hit,
            "replica_memory_bytes": replica, "replica_fits_node": replica <= node_memory_gb * 1e9}


def check_finite(figures: Any, name: str = "plan") -> None:
    """ValueError naming the first figure that is not a finite number (a rate too small or a
    time too large for float range: JSON has no Infinity, and a table would print ``inf``)."""
    if isinstance(figures, dict):
        for key, value in figures.items():
            check_finite(value, f"{name}.{key}")
    elif isinstance(figures, list):
        for i, value in enumerate(figures):
            check_finite(value, f"{name}[{i}]")
    elif isinstance(figures, float) and not math.isfinite(figures):
        raise ValueError(f"{name} comes out as {figures}: a rate too small or a time too large "
                         "to size with (--gflops-per-core, --bandwidth-gbps, --call-ms, "
                         "--fanout-ms)")
