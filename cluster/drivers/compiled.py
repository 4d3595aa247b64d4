"""The synchronous step as one Ray Compiled Graph (``train.sync_transport = "compiled"``).

The same step as :func:`cluster.drivers.sync.submit_step`, with the same arithmetic: every
worker computes its update against the parameters of step t-1, each shard applies the mean of its
parts in worker order, and every worker keeps the new parameters for step t+1. Through Ray tasks
that is two calls a step, each through the driver; here the graph

    step ─► worker_k.compute_held(step) ─► shard_j.apply_sync(step, parts j) ─► worker_k.receive

is compiled once (``ray.dag``, ``experimental_compile``) and run once a step: the actors pass the
update and the parameters through shared-memory channels, and the driver only writes the step
number and reads the workers' metrics. A graph's run cannot feed its output into the next run,
so the workers hold the parameters between runs (:meth:`cluster.worker.Worker.receive`).

A graph holds its actors' channels until :meth:`CompiledStepWindow.close` tears it down: the
driver closes it at the end of the stage and before a rollback, then compiles a new one. An
actor's death or an exception in a step reaches the driver from ``ray.get`` as it would from a
task (``ActorUnavailableError`` and ``ActorDiedError`` are ``RayActorError``\\ s), or as a closed
channel when Ray has torn the graph down first (``RayChannelError``). A step waits as
long as it takes, as a task's ``ray.get`` does, not the graph's default 10 s.

A graph is compiled only while every worker and shard runs on the driver's node
(:func:`spread_over`): on a two-node Ray cluster (both nodes on one machine, Ray 2.60), a graph
whose actors passed values from node to node ran its first step and hung at its second, and
tearing it down then crashed the head node's raylet (open upstream: ray-project/ray#58426, a
cross-node graph that hangs, and #63229, the raylet's failed check on a closed channel). The
driver then sends the steps as Ray tasks (the same arithmetic) and says so in the run's events.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import ray

CHANNEL_BYTES = 1 << 20
"""Each channel's starting buffer; Ray grows it for a larger value."""

MAX_RUNS_IN_FLIGHT = 10
"""Runs a graph holds at once (Ray's default; each channel keeps a buffer per run): a driver
keeps ``train.max_in_flight`` + 1, so the config allows at most 9 with this transport."""


def spread_over(actors: list) -> int:
    """How many Ray nodes this driver and ``actors`` (workers and shards, each with a
    ``node_id`` method) run on: the processes a graph of them connects."""
    here = ray.get_runtime_context().get_node_id()
    return len({here, *ray.get([a.node_id.remote() for a in actors])})


def compile_step(workers: list, shards: list):
    """The compiled graph of one synchronous step. Its outputs: each worker's metrics, then
    each worker's receipt of the new parameters."""
    from ray.dag import InputNode, MultiOutputNode

    n = len(shards)
    with InputNode() as step:
        outs = [w.compute_held.options(num_returns=n + 1).bind(step) for w in workers]
        params = [shards[j].apply_sync.bind(step, *[o[j] for o in outs]) for j in range(n)]
        receipts = [w.receive.bind(*params) for w in workers]
        graph = MultiOutputNode([o[n] for o in outs] + receipts)
    return graph.experimental_compile(_buffer_size_bytes=CHANNEL_BYTES,
                                      _max_inflight_executions=MAX_RUNS_IN_FLIGHT)


class CompiledStepWindow:
    """:class:`cluster.drivers.sync.StepWindow`'s interface over a compiled graph: steps in
    flight, oldest first, awaited in order. The workers first receive ``param_refs`` (each
    shard's slices before the first step)."""

    def __init__(self, workers: list, shards: list, param_refs: list) -> None:
        ray.get([w.receive.remote(*param_refs) for w in workers])
        self.n_workers = len(workers)
        self.graph = compile_step(workers, shards)
        self.steps: collections.deque = collections.deque()  # (step, the run's output refs)

    def submit(self, step: int) -> None:
        self.steps.append((step, self.graph.execute(step)))

    def applied(self, keep: int) -> Iterator[tuple[int, list[dict]]]:
        """Wait for the oldest steps until ``keep`` are outstanding; yields each one's (step,
        its workers' metric records) as it is applied."""
        while len(self.steps) > keep:
            step, refs = self.steps.popleft()
            outputs = [r.get(timeout=-1) for r in refs]  # -1: as long as the step takes
            yield step, outputs[:self.n_workers]

    def close(self) -> None:
        """Tear the graph down (its actors take ordinary calls again); the steps in flight are
        dropped."""
        self.steps.clear()
        try:
            self.graph.teardown()
        except ray.exceptions.RayError:  # an actor of it died: the graph is gone all the same
            pass
