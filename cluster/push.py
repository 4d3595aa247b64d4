"""What an asynchronous push carries: one strategy object per replica, chosen once.

Downpour (Dean et al. 2012) lets a replica push every ``n_push`` steps. Three kinds of push
(``train.push``):

- ``"gradient"`` (DistBelief's Downpour): the sum of the CD updates since the last push; the
  shard applies it with its own optimiser. Between fetches the replica does not move.
- ``"delta"`` (read-my-writes, Ho et al. 2013): the replica applies each update to its own copy
  with its own optimiser and pushes the change of its parameters since the last push; the shard
  adds it. A fetch keeps the changes the shards have not seen yet.
- ``"average"`` (asynchronous model averaging): as ``"delta"``, the change weighted by
  ``1 / n_workers``, so the shards move by the mean of the replicas' steps.

A strategy answers four questions for the protocol (:class:`cluster.downpour.Downpour`): what a
step does to the replica (:meth:`add`), what a push carries (:meth:`take`), how fetched
parameters enter the replica (:meth:`receive`), and whether the shards add what they receive
(:attr:`shards_add`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from torch import Tensor

from cluster.sharding import ShardLayout
from models.rbm.dense import RBMBase

PushKind = Literal["gradient", "delta", "average"]
PUSH_KINDS: tuple[str, ...] = ("gradient", "delta", "average")


class PushStrategy(Protocol):
    """The replica side of one kind of push."""

    shards_add: bool
    """The shards add a push as it is (a parameter change) instead of applying it with their
    optimiser (a gradient)."""

    replica_steps: bool
    """The replica applies its own updates, so its optimiser state is part of its state."""

    def add(self, rbm: RBMBase, update: dict[str, Tensor]) -> None:
        """Account one step's update."""

    def take(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """What the next push carries; starts a new accumulation."""

    def mark(self) -> object:
        """What :meth:`receive` needs to know about a fetch requested now."""

    def receive(self, params: dict[str, Tensor], layout: ShardLayout,
                parts: Sequence[Mapping], mark: object) -> None:
        """Load fetched shard parts into the replica's ``params``."""

    def reset(self) -> None:
        """Forget what was accumulated (after a seek: a replayed chunk starts afresh)."""


class GradientPush:
    """Pushes the sum of the updates since the last push; the replica stays where it fetched."""

    shards_add = False
    replica_steps = False

    def __init__(self) -> None:
        self._sum: dict[str, Tensor] | None = None

    def add(self, rbm: RBMBase, update: dict[str, Tensor]) -> None:
        if self._sum is None:
            self._sum = update
        else:
            for k, u in update.items():
                self._sum[k].add_(u)

    def take(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out, self._sum = self._sum, None  # handed over: the next update is a new tensor
        assert out is not None, "push without an update"
        return out

    def mark(self) -> object:
        return None

    def receive(self, params, layout, parts, mark) -> None:
        layout.join(parts, out=params)

    def reset(self) -> None:
        self._sum = None


class DeltaPush:
    """Pushes ``weight * (params - base)``, ``base`` being the parameters at the last push.

    Read-my-writes on fetch: with ``base`` as it was when the fetch was requested, the replica
    becomes ``fetched + (params - base)``, i.e. it moves by ``fetched - base`` and so does
    ``base`` (its unpushed change ``params - base`` is kept).
    """

    shards_add = True
    replica_steps = True

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight
        self._base: dict[str, Tensor] | None = None

    def add(self, rbm: RBMBase, update: dict[str, Tensor]) -> None:
        rbm.apply_update(update)  # the replica moves; the push carries the change

    def take(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        assert self._base is not None, "push before the first fetch"
        delta = {k: (p - self._base[k]).mul_(self.weight) for k, p in params.items()}
        self._base = {k: p.clone() for k, p in params.items()}  # replaced, never changed
        return delta

    def mark(self) -> object:
        return self._base

    def receive(self, params, layout, parts, mark) -> None:
        if mark is None:
            layout.join(parts, out=params)
            self._base = {k: p.clone() for k, p in params.items()}
            return
        fetched = layout.join(parts)
        for k, p in params.items():
            shift = fetched[k].sub_(mark[k])
            p.add_(shift)
            self._base[k].add_(shift)

    def reset(self) -> None:
        self._base = None


def push_strategy(kind: str, n_workers: int) -> PushStrategy:
    """The strategy for ``train.push = kind`` with ``n_workers`` replicas."""
    if kind == "gradient":
        return GradientPush()
    if kind == "delta":
        return DeltaPush(1.0)
    if kind == "average":
        return DeltaPush(1.0 / n_workers)
    raise ValueError(f"push={kind!r}: use 'gradient', 'delta' or 'average'")


def shards_add(kind: str) -> bool:
    """Whether shards add the pushes of ``train.push = kind`` (without building a replica)."""
    return push_strategy(kind, 1).shards_add


__all__ = ["PUSH_KINDS", "DeltaPush", "GradientPush", "PushKind", "PushStrategy",
           "push_strategy", "shards_add"]
