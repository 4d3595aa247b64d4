"""The stage kinds of a stack, behind one interface.

A stage has a ``config`` (:class:`models.stages.config.StageConfig`), a ``learner`` (what the
parameter server trains: ``params``, ``compute_update``, ``apply_update``, as every RBM), and:

- ``rows(v)``: the learner's training input from what the stage reads;
- ``encode(v)`` / ``encoded_rows(e, generator, index=None)``: the same input in two steps, the
  first of which depends on fixed parameters only, so :class:`models.read_cache.ReadCache` keeps
  it per frame while the stage trains (a competitive stage's whitened windows; the other kinds
  encode nothing); ``index`` picks the batch's entries of ``e`` (the cache's store);
- ``maps(v)`` / ``differentiable_maps(v)``: its analysis layers ``{name: (N, C, H, W)}``, names
  from ``layers``; ``maps(v)[output_layer]`` is what the stage above reads;
- ``needs_data`` and ``prepare(v, weights, generator)``: fit what is fitted to data before
  training (whitening) and set the initial weights (``"exemplar"`` or ``"random"``);
- ``state_dict()`` / ``load_state_dict()``.

What a stage reads: the contrast-normalised frames (stage 0), the output of the stage below,
or, for a competitive stage, a list of levels (``models.stack.RBMStack.reads``).
"""

from __future__ import annotations

from models.stages.competitive import CompetitiveStage
from models.stages.config import StageConfig, stage_shapes
from models.stages.local import LocalStage
from models.stages.tied import TiedStage

STAGE_KINDS = {"local": LocalStage, "tied": TiedStage, "competitive": CompetitiveStage}

__all__ = ["STAGE_KINDS", "StageConfig", "build_stage", "stage_shapes"]


def build_stage(config: StageConfig, in_shape: tuple[int, int, int], **kw):
    """The stage object of ``config.kind`` for inputs of shape ``in_shape`` (C, H, W); ``kw``:
    ``update``, ``generator``, ``device``, ``dtype``."""
    return STAGE_KINDS[config.kind](config, in_shape, **kw)
