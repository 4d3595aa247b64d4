"""Model replicas: Ray actors that read their own dataset shards and compute CD updates.

A worker holds a full ``RBMStack`` (earlier stages frozen at their trained values, the current
stage's parameters refreshed from the parameter server), reads a disjoint set of Parquet shards
with the pipeline's :class:`~pipeline.reader.FrameReader`, turns each batch into the current
stage's input with ``RBMStack.stage_input`` (stage k+1 trains on stage-k features, greedy
layer-wise training, Hinton et al. 2006) and computes ``rbm.compute_update``.

Why ``FrameReader`` and not ``ray.data.read_parquet(...).streaming_split(n)``: a split of a
streaming dataset is coordinated across consumers (a slow consumer holds back the shared
executor, which breaks Downpour's "a slow worker never stalls the others"), and its order is not
fixed from run to run, while the synchronous mode and ``--resume`` need every worker to see the
same batches in the same order and to seek to a saved position. FrameReader gives each worker a
deterministic stream over its own shards, positioned by ``(epoch, batch)``.

Two schedules:

- :meth:`Worker.compute` (sync): one batch against the parameters the driver passes in (the
  previous step's ``apply_sync`` results, as ObjectRefs), returns one update part per shard.
- :meth:`Worker.run` (async, Downpour): ``n_steps`` batches on its own, talking to the shards
  through :class:`cluster.downpour.Downpour` (fetch every ``n_fetch`` steps, push every
  ``n_push``; what a push carries is the :mod:`cluster.push` strategy). The next batch's input
  does not depend on the parameters, so it is prepared while a fetch is in flight.

Everything a worker starts from is small or a file (the job config, a checkpoint folder, the
run's ``model.pt``), never an object in Ray's object store, so Ray can always restart it.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import ray
import torch

from cluster.checkpoint import read_meta
from cluster.config import DataConfig, JobSections
from cluster.downpour import Downpour, Transport
from cluster.ps import ONE_THREAD_ENV, OutOfStep
from cluster.push import push_strategy
from cluster.sharding import TRANSFER_DTYPES, ShardLayout, to_numpy
from cluster.state_io import read_state
from models.kernels.arithmetic import fingerprint
from models.neurons.topk import RunningTopK
from models.rbm.dense import resolve_device
from models.read_cache import StageInput
from models.stack import RBMStack
from pipeline.reader import FrameReader, ShardFrames, list_shards, read_frames, shards_for_worker

MONITORED = ("recon_error", "fe_gap")  # the figures :meth:`Worker._monitor` measures


def cache_budget(train, stage: int, replicas: int = 1) -> int:
    """Bytes of the stage-input cache (:class:`models.read_cache.StageInput`) of a process that
    reads the frames of ``replicas`` workers: ``train.read_cache_mb`` each for a stage above 0
    (a single-process reference over every worker's shards gets what they hold together, so
    it caches what they cache); stage 0 reads the frames themselves."""
    return int(replicas * train.read_cache_mb * 2**20) if stage > 0 else 0


def frame_cache_bytes(train, replicas: int = 1) -> int:
    """Bytes of the decoded-frame cache (:class:`pipeline.reader.ShardFrames`) of a process that
    reads the shards of ``replicas`` workers: ``train.frame_cache_mb`` each."""
    return int(replicas * train.frame_cache_mb * 2**20)


def fill_stage_cache(stage_input: StageInput, root: str, shards: list[str]) -> int:
    """Encode the frames of ``shards`` under ``root`` into ``stage_input``'s cache, up to its
    capacity, before a first step (:meth:`models.read_cache.ReadCache.fill`); how many frames
    it holds (0 without a cache or shards)."""
    cache = stage_input.cache
    if cache is None or not shards:
        return 0
    return cache.fill(read_frames(root, shards=shards, limit=cache.capacity))


def split_holdout(root: str, holdout_frames: int) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards): the last shard is held out when there are >= 2 and
    ``holdout_frames`` > 0 (used for the free-energy gap)."""
    shards = list_shards(root)
    if holdout_frames > 0 and len(shards) >= 2:
        return shards[:-1], shards[-1:]
    return shards, []


def updater_state_on(state: Mapping, device: torch.device | str) -> dict:
    """A ``ParameterUpdater.state_dict()`` (step count, dicts of tensors) with its tensors on
    ``device``."""
    return {k: {n: t.to(device) for n, t in v.items()} if isinstance(v, dict) else v
            for k, v in state.items()}


def compute_on_this_thread() -> None:
    """How a worker computes: on one torch thread (Ray gives it a share of a core), with
    subnormal floats flushed to zero (``torch.set_flush_denormal``: the x86 FTZ and DAZ modes
    of the calling thread and of the threads it starts later).

    The competitive stage's softmax puts most of a window's ``K`` probabilities far below the
    winner's, and many can land between 0 and float32's smallest normal value (about 1.2e-38).
    Arithmetic on such a subnormal number takes the CPU's slow microcode path, so the products
    and sums of a CD step that read these probabilities (``p^T v``, the counts, the chain's
    sampling) can run at a fraction of their speed. Flushed, the probabilities count as the 0
    they are next to the others in every sum a step makes."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def step_seed(seed: int, stage: int, worker: int, step: int) -> int:
    """A generator seed for one (stage, worker, step): per-step seeding makes the random stream
    independent of where a run was resumed."""
    return int(np.random.SeedSequence([seed, stage, worker, step]).generate_state(1)[0])


def input_seed(seed: int, stage: int, worker: int, step: int) -> int:
    """The seed of the rows a stage samples from step ``step``'s batch (a stream of its own,
    apart from :func:`step_seed`'s; step -1: the held-out rows)."""
    entropy = [seed, stage, worker, step + 1, 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def mirrored(x: np.ndarray, entropy: Sequence[int]) -> np.ndarray:
    """A copy of the batch ``x (N, C, H, W)`` with each frame flipped left-right with
    probability 1/2, the draws seeded by ``entropy`` (a stream's seed and position: a resumed
    run flips the same frames)."""
    flip = np.random.default_rng([int(e) for e in entropy]).random(len(x)) < 0.5
    return np.where(flip[:, None, None, None], x[..., ::-1], x)


class BatchStream:
    """One worker's deterministic stream of uint8 batches, positioned by ``(epoch, batch)``.

    Epoch ``e`` reads the worker's shards with reader seed ``seed + e`` (a fresh shuffle each
    epoch when ``shuffle_buffer`` > 0), dropping the last partial batch. The shards' decoded
    frames are kept across epochs up to ``frame_cache_bytes`` (:class:`ShardFrames`).
    """

    def __init__(self, data: DataConfig, shards: list[str], seed: int,
                 position: tuple[int, int] = (0, 0), frame_cache_bytes: int = 0) -> None:
        if not shards:
            raise ValueError("this worker has no dataset shards: use fewer workers or re-ingest "
                             "with smaller shards (pipeline shard size)")
        self.data, self.shards, self.seed = data, shards, seed
        self.frames = ShardFrames(frame_cache_bytes)
        self.epoch, self.batch = 0, 0
        self._it = None
        self.seek(position)

    def _reader(self, epoch: int) -> FrameReader:
        return FrameReader(self.data.path, batch_size=self.data.batch_size, shards=self.shards,
                           shuffle_buffer=self.data.shuffle_buffer, seed=self.seed + epoch,
                           drop_last=True, frames=self.frames)

    def seek(self, position: Sequence[int]) -> None:
        """Continue from ``(epoch, batch)`` (skips the batches before it)."""
        self.epoch, self.batch = int(position[0]), 0
        self._it = iter(self._reader(self.epoch))
        for _ in range(int(position[1])):
            if next(self._it, None) is None:
                raise ValueError(f"this worker's data holds {self.batch} batches an epoch, not "
                                 f"the {int(position[1])} its checkpoint had read: was the "
                                 "dataset (data.path) or data.batch_size changed since?")
            self.batch += 1

    @property
    def position(self) -> tuple[int, int]:
        """Where the next batch comes from."""
        return (self.epoch, self.batch)

    def next(self) -> np.ndarray:
        """The next batch (N, C, H, W) uint8, rolling over to the next epoch (half its frames
        flipped left-right with ``data.mirror``)."""
        for _ in range(2):
            try:
                x = next(self._it)
                self.batch += 1
                return mirrored(x, (self.seed, *self.position)) if self.data.mirror else x
            except StopIteration:
                self.epoch, self.batch = self.epoch + 1, 0
                self._it = iter(self._reader(self.epoch))
        raise ValueError(f"worker shards {self.shards} hold fewer than batch_size="
                         f"{self.data.batch_size} frames; lower data.batch_size")


class RayTransport:
    """The shards are Ray actors: calls are ``.remote()``, handles are ObjectRefs, and pushes
    leave from one sender thread."""

    lost = ray.exceptions.RayActorError

    def __init__(self) -> None:
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="push")

    def resolve(self, shard: Any) -> Any:
        """A shard actor from its name (a restarted worker finds the shards again)."""
        return ray.get_actor(shard) if isinstance(shard, str) else shard

    def call(self, actor: Any, method: str, *args: Any) -> ray.ObjectRef:
        return getattr(actor, method).remote(*args)

    def get(self, handles: list) -> list:
        return ray.get(handles)

    def ready(self, handles: list, n: int | None = None) -> list:
        if n is None:
            return ray.wait(handles, num_returns=len(handles), timeout=0)[0]
        return ray.wait(handles, num_returns=n)[0]

    def submit(self, fn: Callable, *args: Any) -> concurrent.futures.Future:
        return self._sender.submit(fn, *args)


class Worker:
    """A model replica (Ray actor body). See the module docstring for the two schedules.

    Parameters
    ----------
    index : this replica (``job.train.n_workers`` of them split the training shards).
    job : the job config's sections (``data``, ``model``, ``update``, ``train``, ``sim``).
    stage : the stack stage being trained.
    layout : ``ShardLayout.to_dict()`` of that stage.
    shards : parameter-server shards (async mode; empty in sync mode): the names of the shard
        actors (handles as constructor arguments would keep Ray from restarting the worker),
        or plain objects with ``transport=InProcess()``.
    transport : how ``shards`` are reached (Ray actors by default; ``InProcess`` in tests).
    checkpoint : a checkpoint folder of this stage: the data position, the replica's own RBM
        state and the step to start from (none: the start of the data, step 0).
    stack_path : a ``model.pt`` holding the earlier stages, trained (none at stage 0).
    """

    def __init__(self, index: int, job: JobSections, stage: int, layout: Mapping, *,
                 shards: Sequence = (), transport: Transport | None = None,
                 checkpoint: str | None = None, stack_path: str | None = None) -> None:
        compute_on_this_thread()
        self.threads_set_up = {threading.get_ident()}
        tc = job.train
        if tc.transfer_dtype not in TRANSFER_DTYPES:
            raise ValueError(f"transfer_dtype={tc.transfer_dtype!r}: use one of "
                             f"{TRANSFER_DTYPES}")
        self.index, self.stage, self.seed = index, stage, tc.seed
        self.log_interval = tc.log_interval
        self.slow_delay_s = job.sim.slow_worker_delay_s if job.sim.slow_worker == index else 0.0
        self.device = resolve_device(tc.device)
        self.layout = ShardLayout.from_dict(layout)
        self.push = push_strategy(tc.push, tc.n_workers)
        self.stack = RBMStack(job.model, update=job.update, device=self.device,
                              generator=torch.Generator().manual_seed(tc.seed))
        if stack_path is not None:
            self.stack.load_state_dict(read_state(stack_path)["state"])
        self.rbm = self.stack.rbms[stage]
        self.input = StageInput(self.stack, stage, cache_budget(tc, stage))
        start = read_meta(checkpoint) if checkpoint else None
        if start is not None and start["local_states"][index]:
            self._load_local_state(start["local_states"][index])
        train, held = split_holdout(job.data.path, job.data.holdout_frames)
        self.shards = shards_for_worker(train, index, tc.n_workers)
        self.stream = BatchStream(job.data, self.shards, seed=tc.seed * 7919 + index,
                                  position=start["positions"][index] if start else (0, 0),
                                  frame_cache_bytes=frame_cache_bytes(tc))
        self.data_path = job.data.path
        self.holdout_v = None
        if held:
            frames = read_frames(job.data.path, shards=held, limit=job.data.holdout_frames)
            self.holdout_v = self._stage_input(frames) if len(frames) else None
        self.next_step = int(start["step"]) if start else 0  # sync: this replica's next step
        self.downpour = Downpour(index, shards, self.layout, self.push,
                                 transport or RayTransport(), tc)

    def fill_cache(self) -> int:
        """Encode this worker's frames into its stage-input cache before its first step
        (:func:`fill_stage_cache`); how many it holds (0 without a cache)."""
        return fill_stage_cache(self.input, self.data_path, self.shards)

    # ------------------------------------------------------------------ state
    def _stage_input(self, frames: np.ndarray, step: int = -1) -> torch.Tensor:
        """uint8 frames (N, C, H, W) -> what this stage's learner sees as ``v``; a stage that
        samples rows draws them with step ``step``'s generator (:func:`input_seed`)."""
        g = torch.Generator(device=self.device).manual_seed(
            input_seed(self.seed, self.stage, self.index, step))
        return self.input.rows(frames, g)

    def _load_local_state(self, state: Mapping) -> None:
        """The replica's own RBM state: sparsity estimate q and persistent chain, and when the
        replica applies its own updates its optimiser state (velocity or Adagrad sums, step)."""
        for name in ("q", "chain_h"):
            value = state.get(name)
            setattr(self.rbm, name, None if value is None else
                    torch.as_tensor(np.array(value)).to(self.device, self.rbm.dtype))
        if self.push.replica_steps and state.get("updater") is not None:
            self.rbm.updater.load_state_dict(updater_state_on(state["updater"], self.device))

    def local_state(self) -> dict:
        """What :meth:`_load_local_state` takes back (stored in checkpoints): CPU tensors."""
        state = {name: None if getattr(self.rbm, name) is None else
                 getattr(self.rbm, name).detach().cpu().clone() for name in ("q", "chain_h")}
        if self.push.replica_steps:  # serialised when returned (Ray), so no copy is needed
            state["updater"] = updater_state_on(self.rbm.updater.state_dict(), "cpu")
        return state

    def position(self) -> tuple[int, int]:
        """The data position ``(epoch, batch)`` of the next batch."""
        return self.stream.position

    def seek(self, position: Sequence[int]) -> None:
        """Move the data stream to ``(epoch, batch)`` (after a restart or a rollback)."""
        self.stream.seek(position)
        self.downpour.reset()

    def restore(self, position: Sequence[int], local_state: Mapping | None, step: int) -> None:
        """Sync rollback: data position, RBM local state and step of a checkpoint."""
        self.seek(position)
        self.rbm.q = self.rbm.chain_h = None
        if local_state:
            self._load_local_state(local_state)
        self.next_step = step

    def ping(self) -> int:
        """For readiness checks."""
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        return ray.get_runtime_context().get_node_id()

    def arithmetic(self) -> dict[str, str]:
        """This process's :func:`models.kernels.arithmetic.fingerprint`."""
        return fingerprint()

    # ------------------------------------------------------------------ one step
    def _monitor(self, v: torch.Tensor) -> dict:
        """Reconstruction error and free-energy gap F(held-out) - F(train) (Hinton 2010, sec. 6)."""
        out = {"recon_error": float(self.rbm.reconstruction_error(v))}
        if self.holdout_v is not None:
            n = min(len(self.holdout_v), len(v))
            held = self.rbm.free_energy(self.holdout_v[:n]).mean()
            out["fe_gap"] = float(held - self.rbm.free_energy(v[:n]).mean())
        return out

    def next_input(self, step: int) -> torch.Tensor:
        """The next batch as step ``step``'s input (independent of the parameters)."""
        return self._stage_input(self.stream.next(), step)

    def compute_step(self, step: int, v: torch.Tensor | None = None
                     ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Step ``step``'s update on ``v`` (default: the next batch) with that step's generator
        (:func:`step_seed`); returns ``(update, v)``."""
        if self.slow_delay_s:
            time.sleep(self.slow_delay_s)
        if v is None:
            v = self.next_input(step)
        g = torch.Generator(device=self.device).manual_seed(
            step_seed(self.seed, self.stage, self.index, step))
        return self.rbm.compute_update(v, generator=g), v

    # ------------------------------------------------------------------ sync
    def compute(self, step: int, *parts: Mapping[str, np.ndarray]) -> tuple:
        """Sync step ``step``: load the parameters (one part per shard), compute the update on
        the next batch; returns one numpy update part per shard, then a metrics dict."""
        t0 = time.perf_counter()
        self._check_step(step)
        self.receive(*parts)
        return self._sync_step(step, t0)

    def receive(self, *parts: Mapping[str, np.ndarray]) -> None:
        """Keep the shards' parameters (one part per shard) for the next step."""
        self.layout.join(parts, out=self.rbm.params)

    def compute_held(self, step: int) -> tuple:
        """:meth:`compute` against the parameters last received. A compiled graph
        (:mod:`cluster.drivers.compiled`) calls it on a thread of its own, set up here as the
        actor's (:func:`compute_on_this_thread`: the flushing of subnormals is per thread)."""
        if threading.get_ident() not in self.threads_set_up:
            compute_on_this_thread()
            self.threads_set_up.add(threading.get_ident())
        t0 = time.perf_counter()
        self._check_step(step)
        return self._sync_step(step, t0)

    def _check_step(self, step: int) -> None:
        if step != self.next_step:
            raise OutOfStep(f"worker {self.index} is at step {self.next_step} (restarted?) but "
                            f"was asked for step {step}")

    def _sync_step(self, step: int, t0: float) -> tuple:
        """The update of sync step ``step`` and its metrics (frames/s from ``t0``)."""
        update, v = self.compute_step(step)
        self.next_step += 1
        metrics = {"worker": self.index, "step": step}
        if step % self.log_interval == 0:
            metrics.update(self._monitor(v))
        metrics["frames_per_s"] = len(v) / max(time.perf_counter() - t0, 1e-9)
        return (*[to_numpy(p) for p in self.layout.split_all(update)], metrics)

    # ------------------------------------------------------------------ async
    def run(self, n_steps: int, position: Sequence[int], seq_start: int,
            step_start: int) -> dict:
        """Downpour: ``n_steps`` local steps from data ``position``; pushes carry sequence
        numbers ``seq_start, seq_start + 1, ...``. Returns this chunk's metrics once every push
        is answered, with ``local_state``: the state a checkpoint pairs with ``position``."""
        t0 = time.perf_counter()
        if tuple(position) != self.stream.position:
            self.seek(position)
        downpour = self.downpour
        downpour.begin(seq_start)
        clock = downpour.clock
        frames, monitors = 0, []
        for step in range(step_start, step_start + n_steps):
            v = self._fetch_and_prepare(step) if downpour.fetch_due else None
            downpour.prefetch_if_due()
            if v is None:
                with clock("input"):
                    v = self.next_input(step)
            with clock("compute"):
                update, v = self.compute_step(step, v)
            frames += len(v)
            if step % self.log_interval == 0:
                monitors.append(self._monitor(v))
            downpour.step(self.rbm, update)
        out = {"worker": self.index, "steps": n_steps, "frames": frames,
               "position": list(self.stream.position), **downpour.finish(self.rbm.params)}
        out["seconds"] = seconds = time.perf_counter() - t0
        out["frames_per_s"] = frames / max(seconds, 1e-9)
        out.update(mean_monitored(monitors))
        out["local_state"] = self.local_state()
        return out

    # ------------------------------------------------------------------ after training
    @torch.no_grad()
    def corpus_tops(self, params: Mapping[str, np.ndarray], shards: Sequence[tuple[str, int]],
                    k: int, max_units: int, batch: int = 64
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every unit's top ``k`` frames among those of ``shards`` ((path, id of its first
        frame) pairs) under the stage's trained ``params`` (gathered from the parameter
        server): ``{layer: (values (U, k) float32, ids (U, k) int64)}`` for the layers of at
        most ``max_units`` units (none: ``{}`` after one batch). The frames come from this
        worker's kept shards and their stage input from its cache
        (:meth:`models.read_cache.StageInput.maps`), so its own frames pass through no stage
        again: the top-frames pass that ``catneuron evaluate`` and ``visualize`` would
        otherwise run over the whole dataset."""
        for name, value in self.rbm.params.items():
            value.copy_(torch.as_tensor(params[name]))
        tops: dict[str, RunningTopK] = {}
        for path, first in shards:
            frames = self.stream.frames(path)
            for i in range(0, len(frames), batch):
                chunk = frames[i:i + batch]
                ids = torch.arange(first + i, first + i + len(chunk))
                for layer, m in self.input.maps(chunk).items():
                    r = m.flatten(1)
                    if r.shape[1] <= max_units:
                        tops.setdefault(layer, RunningTopK(r.shape[1], k)).update(r, ids)
                if not tops:
                    return {}  # every layer is wider than max_units: nothing to rank
        return {layer: (t.values.numpy(), t.ids.numpy()) for layer, t in tops.items()}

    def _fetch_and_prepare(self, step: int) -> torch.Tensor:
        """Fetch the parameters, preparing the next input while the answer travels (its time
        counts as input, the rest as fetch)."""
        clock = self.downpour.clock
        t, input_before = time.perf_counter(), clock.seconds["input"]

        def prepare() -> torch.Tensor:
            with clock("input"):
                return self.next_input(step)

        v = self.downpour.fetch(self.rbm.params, while_waiting=prepare)
        clock.seconds["fetch"] += (time.perf_counter() - t
                                   - (clock.seconds["input"] - input_before))
        return v


def mean_monitored(records: list[Mapping]) -> dict[str, float]:
    """The mean of each monitored figure (``recon_error``, ``fe_gap``: :meth:`Worker._monitor`)
    over the records that have it: one worker's over a chunk's steps, or the sync driver's over
    the workers of one step."""
    out = {}
    for key in MONITORED:
        values = [r[key] for r in records if key in r]
        if values:
            out[key] = float(np.mean(values))
    return out


def worker_actor_class(max_restarts: int = -1):
    """``Worker`` as a Ray actor class, restarted by Ray when it dies; tasks not retried; one
    thread (``cluster.ps.ONE_THREAD_ENV``)."""
    return ray.remote(max_restarts=max_restarts, max_task_retries=0,
                      runtime_env=ONE_THREAD_ENV)(Worker)
