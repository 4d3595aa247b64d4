"""Parameter-server shards: thin Ray actors around the models package's ``ParameterUpdater``.

DistBelief's Downpour SGD (Dean et al. 2012, used by Le et al. 2012) keeps the model in shards; each
shard applies the updates that model replicas push, with its own optimiser state (per-shard
Adagrad). A shard here holds slices of the parameter tensors (see :mod:`cluster.sharding`) and
applies updates with exactly the code a single process uses (``ParameterUpdater.step``).

No update is applied twice: every push carries ``(worker, seq)`` and a shard ignores a sequence
number it has already seen from that worker (a restarted worker that replays a lost chunk, or a
retried task, is rejected and counted). A shard that dies is restarted by Ray (``max_restarts``)
and its constructor restores the last checkpoint of its stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import numpy as np
import torch

from cluster.checkpoint import latest_checkpoint
from cluster.sharding import ShardLayout, as_tensor, combine_updates, pack, to_numpy
from cluster.state_io import read_state, write_state
from models.rbm.optim import ParameterUpdater, UpdateConfig
from pipeline import storage


class OutOfStep(RuntimeError):
    """A restarted actor was asked to continue a synchronous run it no longer holds the state
    of; the driver rolls every actor back to the last checkpoint."""


class ParameterShard:
    """One parameter-server shard: slices of the parameters and their optimiser state.

    Parameters
    ----------
    index : this shard's position in the layout.
    layout : ``ShardLayout.to_dict()`` of the stage being trained.
    update : the optimiser rule (momentum SGD or per-shard Adagrad).
    decay_names : parameters that get weight decay.
    params : this shard's initial slices (numpy). Ignored when ``stage_dir`` has a checkpoint.
    stage_dir : the stage's checkpoint folder; a (re)started shard loads its part of the latest
        checkpoint there, which is how a shard killed mid-run is restored.
    deltas : async pushes are parameter changes the workers made with their own optimiser
        (``train.push = "delta"`` or ``"average"``): added as they are. Otherwise
        (``"gradient"``) a push is an update this shard applies with its ``ParameterUpdater``.
    """

    def __init__(self, index: int, layout: Mapping, update: UpdateConfig, decay_names: tuple,
                 params: Mapping[str, np.ndarray] | None, stage_dir: str | None = None,
                 deltas: bool = False) -> None:
        self.index = index
        self.layout = ShardLayout.from_dict(layout)
        self.updater = ParameterUpdater(update, decay_names)
        self.deltas = deltas
        self.params: dict[str, torch.Tensor] = {}
        self.last_seq: dict[int, int] = {}
        self.n_applied = 0
        self.n_rejected = 0
        self.n_fetches = self.n_replies = 0  # fetch calls; pushes that returned the parameters
        self.seconds_apply = 0.0  # time spent applying updates (profiling)
        self.bytes_in = self.bytes_out = 0  # array payload received (pushes) and sent
        self.restored_from: str | None = None
        ckpt = latest_checkpoint(stage_dir) if stage_dir else None
        if ckpt is not None:
            self.load(storage.join(ckpt, f"shard{index}.pt"))
            self.restored_from = ckpt
        elif params is not None:
            self.params = {k: as_tensor(v).clone() for k, v in params.items()}
        else:
            raise ValueError(f"shard {index}: no initial params and no checkpoint in {stage_dir}")

    # ------------------------------------------------------------------ serving
    def fetch(self, dtype: str = "float32") -> tuple[int, dict[str, np.ndarray]]:
        """(version, current slices) as ``dtype`` (see :func:`cluster.sharding.pack`). The
        version counts applied updates (for staleness)."""
        self.n_fetches += 1
        return self._snapshot(dtype)

    def _snapshot(self, dtype: str) -> tuple[int, dict[str, np.ndarray]]:
        """(version, current slices as ``dtype``): what a fetch and a replying push return."""
        out = pack(self.params, dtype)
        self.bytes_out += payload_bytes(out)
        return self.n_applied, out

    def push(self, worker: int, seq: int, update: Mapping[str, np.ndarray],
             reply: str | None = None) -> int | tuple:
        """Apply one worker's update (or add its delta) unless ``seq`` was already seen from
        ``worker``.

        Returns the version the update was applied at, or -1 if it was a duplicate (rejected);
        with ``reply`` (a transfer dtype) ``(that, self.fetch(reply))``: the push and the
        worker's next fetch in one call.
        """
        if reply is not None:
            version = self.push(worker, seq, update)
            self.n_replies += 1
            return version, self._snapshot(reply)
        self.bytes_in += payload_bytes(update)
        if seq <= self.last_seq.get(worker, -1):
            self.n_rejected += 1
            return -1
        self.last_seq[worker] = seq
        version = self.n_applied
        t = time.perf_counter()
        if self.deltas:
            for k, v in update.items():
                self.params[k].add_(as_tensor(v))
        else:
            self.updater.step(self.params, {k: as_tensor(v) for k, v in update.items()})
        self.n_applied += 1
        self._check_finite()
        self.seconds_apply += time.perf_counter() - t
        return version

    def apply_sync(self, step: int, *updates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Synchronous step: mean of all workers' updates in worker order, applied once.

        Returns the new slices (the next step's fetch, with no extra round trip). A step number
        already applied is not applied again.
        """
        self.bytes_in += sum(payload_bytes(u) for u in updates)
        expected = self.last_seq.get(-1, -1) + 1
        if step < expected:  # already applied: never twice
            self.n_rejected += 1
            return self._sync_reply()
        if step > expected:
            raise OutOfStep(f"shard {self.index} holds step {expected - 1} (restored from "
                            f"{self.restored_from}) but was asked to apply step {step}")
        self.last_seq[-1] = step
        t = time.perf_counter()
        self.updater.step(self.params, combine_updates(updates))
        self.n_applied += 1
        self._check_finite()
        self.seconds_apply += time.perf_counter() - t  # as push's: benchmarks/ps.py reads it
        return self._sync_reply()

    def _sync_reply(self) -> dict[str, np.ndarray]:
        out = to_numpy(self.params)
        self.bytes_out += payload_bytes(out)
        return out

    def _check_finite(self, every: int = 50) -> None:
        """Raise FloatingPointError (naming the fix) if the slices became NaN/inf; checked
        every ``every`` updates (one reduction)."""
        if self.n_applied % every:
            return
        if all(bool(torch.isfinite(p).all()) for p in self.params.values()):
            return
        lr = self.updater.config.learning_rate
        raise FloatingPointError(
            f"parameter-server shard {self.index}'s parameters became NaN/inf after "
            f"{self.n_applied} updates: lower update.learning_rate (now {lr:g}, try "
            f"{lr / 10:g}) or update.momentum")

    def ping(self) -> int:
        """For liveness probes (:mod:`cluster.liveness`)."""
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def arithmetic(self) -> dict[str, str]:
        """This process's :func:`models.kernels.arithmetic.fingerprint` (its optimiser's)."""
        from models.kernels.arithmetic import fingerprint

        return fingerprint()

    def params_now(self) -> dict[str, np.ndarray]:
        """Current slices only (sync mode's first fetch)."""
        return self._sync_reply()

    # ------------------------------------------------------------------ state
    def save(self, path: str) -> str:
        """Write params, optimiser state and sequence numbers to ``path`` (a path or URI,
        atomically). Parameters that became NaN/inf are refused (FloatingPointError, as
        :meth:`_check_finite`): a checkpoint, the end of a stage among them, is checked
        whatever the number of updates since the last periodic check (a stage that pushes
        every few steps may apply fewer updates than one period)."""
        self._check_finite(every=1)
        write_state(path, {"index": self.index, "params": self.params,
                           "updater": self.updater.state_dict(), "last_seq": dict(self.last_seq),
                           "n_applied": self.n_applied, "n_rejected": self.n_rejected})
        return path

    def load(self, path: str) -> None:
        """Restore what :meth:`save` wrote (``weights_only=True``: a file that names code is
        refused with :class:`models.state_file.UnsafeStateFile`, nothing in it runs)."""
        state = read_state(path)
        if state["index"] != self.index:
            raise ValueError(f"{path} holds shard {state['index']}, not shard {self.index}")
        shapes = {k: tuple(v.shape) for k, v in state["params"].items()}
        expected = self.layout.shard_shapes(self.index)
        if shapes != expected:
            raise ValueError(
                f"{path} holds parts of shapes {shapes}, but shard {self.index} of this run's "
                f"layout holds {expected}: the checkpoint was written "
                "with another n_ps_shards, model or catneuron version; resume with the same "
                "config or start a new run folder")
        self.params = {k: v.clone() for k, v in state["params"].items()}
        self.updater.load_state_dict(state["updater"])
        self.last_seq = dict(state["last_seq"])
        self.n_applied = int(state["n_applied"])
        self.n_rejected = int(state["n_rejected"])

    def info(self) -> dict:
        """Counters for logs and tests."""
        return {"index": self.index, "n_applied": self.n_applied, "n_rejected": self.n_rejected,
                "n_fetches": self.n_fetches, "n_replies": self.n_replies,
                "last_seq": dict(self.last_seq), "restored_from": self.restored_from,
                "pid": os.getpid(), "seconds_apply": self.seconds_apply,
                "numel": sum(int(v.numel()) for v in self.params.values()),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "memory_bytes": self.memory_bytes()}

    def memory_bytes(self) -> int:
        """Bytes of the tensors this shard holds: its slices and its optimiser's state."""
        state = self.updater.state_dict()
        tensors = [*self.params.values(), *(t for v in state.values() if isinstance(v, dict)
                                            for t in v.values())]
        return sum(t.numel() * t.element_size() for t in tensors)


def payload_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of the arrays of one transfer (what the object store carries, less its framing)."""
    return sum(int(np.asarray(a).nbytes) for a in arrays.values())


ONE_THREAD_ENV = {"env_vars": {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}}
"""Runtime env of the shard and worker actors: one thread per actor for numba's pool too (the
models package's CPU kernels are numba ``parallel=True``; a pool as wide as the machine in
every actor spins its idle threads against the other actors'). ``OMP_NUM_THREADS`` gives torch one
thread in a shard actor; a worker's constructor sets it too. A shard's constructor leaves the
thread count alone: the driver builds shards in its own process to write a stage's first
checkpoint (:func:`cluster.stage.write_initial`), and then fits the next stage's whitening on all
its cores."""


SHARD_CPUS = 0.01
"""Ray CPUs a shard asks for: a tiny share (it mostly waits)."""


def shard_actor_class(max_restarts: int = -1):
    """``ParameterShard`` as a Ray actor class: ``SHARD_CPUS``, restarted by Ray when it dies,
    tasks never retried (a lost push stays lost), one thread."""
    import ray

    return ray.remote(num_cpus=SHARD_CPUS, max_restarts=max_restarts, max_task_retries=0,
                      runtime_env=ONE_THREAD_ENV)(ParameterShard)
