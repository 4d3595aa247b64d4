"""A stack of locally connected RBMs (a Deep Belief Network), trained greedily layer by layer.

Each stage is ``LocalRBM -> L2 pooling -> local contrast normalisation`` (Le et al. 2012, with
RBMs in place of their sparse autoencoders; greedy layer-wise training as in Hinton, Osindero &
Teh 2006). Raw frames are scaled to [0, 1] and contrast-normalised before stage 0. Stage k's RBM
sees ``stage_input(x, k)``: the contrast-normalised frames for k = 0, else stage k-1's output.
The paper's geometry (200x200 input, 18x18 fields, 8 maps, 5x5 pooling, 3 stages) is::

    StackConfig(input_size=200, channels=3, stages=(StageConfig(field=18, n_maps=8, pool=5),) * 3)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import torch
from torch import Tensor

from models.layers import l2_pool, local_contrast_normalize
from models.rbm.dense import RBMConfig, device_generator, resolve_device
from models.rbm.local import LocalRBM, positions
from models.rbm.optim import UpdateConfig
from models.state_file import load_state, save_state
from models.typed_config import build


@dataclass(frozen=True, kw_only=True)
class StageConfig(RBMConfig):
    """One stage: local RBM (``field``, ``stride``, ``n_maps``) -> L2 pool -> LCN.

    A stage is its RBM's :class:`models.rbm.dense.RBMConfig` (every field, checked there) plus the
    geometry below; fields are given by keyword.

    Attributes
    ----------
    field : receptive-field side in units of the stage's input maps.
    stride : step between receptive fields.
    n_maps : hidden units per position (K).
    pool : L2-pooling window side (over one map's position grid).
    pool_stride : step between pooling windows.
    lcn_sigma : std (in pooled positions) of the LCN Gaussian window after pooling.
    visible : ``"gaussian"`` (real inputs, unit variance; the default after LCN) or
        ``"bernoulli"`` (the stage's input is squashed by a logistic sigmoid into (0, 1)).
    k, persistent, n_chains, sparsity_target, sparsity_cost, sparsity_decay, init_std,
    check_interval : inherited from ``RBMConfig``.
    learning_rate : overrides the stack's ``UpdateConfig.learning_rate`` for this stage.
    """

    field: int
    stride: int = 1
    n_maps: int = 8
    pool: int = 5
    pool_stride: int = 1
    lcn_sigma: float = 1.0
    visible: Literal["gaussian", "bernoulli"] = "gaussian"
    learning_rate: float | None = None

    def rbm_config(self) -> RBMConfig:
        """The RBMConfig of this stage's LocalRBM (its fields, taken by name)."""
        return RBMConfig(**{f.name: getattr(self, f.name) for f in fields(RBMConfig)})


@dataclass(frozen=True)
class StackConfig:
    """Geometry of a stack; validated on construction.

    Attributes
    ----------
    input_size : side of the (square) input frames in pixels.
    channels : 1 (grey) or 3 (colour) input channels.
    stages : the stages, bottom first (dicts are accepted and converted).
    input_lcn_sigma : std in pixels of the LCN window applied to the frames before stage 0.

    Raises
    ------
    ValueError : naming the offending field, e.g. ``stages[0].field=80 > input 64``.
    """

    input_size: int
    channels: int = 1
    stages: tuple[StageConfig, ...] = ()
    input_lcn_sigma: float = 2.0

    def __post_init__(self) -> None:
        stages = tuple(StageConfig(**s) if isinstance(s, dict) else s for s in (self.stages or ()))
        object.__setattr__(self, "stages", stages)
        if self.input_size < 1:
            raise ValueError(f"input_size={self.input_size} must be >= 1")
        if self.channels < 1:
            raise ValueError(f"channels={self.channels} must be >= 1")
        if not self.input_lcn_sigma > 0:
            raise ValueError(f"input_lcn_sigma={self.input_lcn_sigma} must be > 0")
        if not stages:
            raise ValueError("stages is empty: give at least one StageConfig")
        size = self.input_size
        for i, st in enumerate(stages):
            if not isinstance(st, StageConfig):
                raise ValueError(f"stages[{i}] must be a StageConfig or dict, got {type(st)}")
            name = f"stages[{i}]"
            for attr in ("field", "stride", "n_maps", "pool", "pool_stride", "k"):
                if int(getattr(st, attr)) < 1:
                    raise ValueError(f"{name}.{attr}={getattr(st, attr)} must be >= 1")
            if st.field > size:
                raise ValueError(f"{name}.field={st.field} > input {size}")
            grid = positions(size, st.field, st.stride)
            if st.pool > grid:
                raise ValueError(
                    f"{name}.pool={st.pool} > {grid} hidden positions per side "
                    f"(input {size}, field {st.field}, stride {st.stride})"
                )
            if not st.lcn_sigma > 0:
                raise ValueError(f"{name}.lcn_sigma={st.lcn_sigma} must be > 0")
            if st.visible not in ("gaussian", "bernoulli"):
                raise ValueError(f"{name}.visible={st.visible!r} must be 'gaussian' or 'bernoulli'")
            if st.learning_rate is not None and not st.learning_rate > 0:
                raise ValueError(f"{name}.learning_rate={st.learning_rate} must be > 0")
            size = positions(grid, st.pool, st.pool_stride)

    def input_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) that each stage's RBM sees."""
        shapes, c, size = [], self.channels, self.input_size
        for st in self.stages:
            shapes.append((c, size, size))
            grid = positions(size, st.field, st.stride)
            c, size = st.n_maps, positions(grid, st.pool, st.pool_stride)
        return shapes

    def output_shape(self, layer: int) -> tuple[int, int, int]:
        """(C, H, W) of stage ``layer``'s output (after pooling and LCN)."""
        c, s, _ = self.input_shapes()[layer]
        st = self.stages[layer]
        grid = positions(s, st.field, st.stride)
        side = positions(grid, st.pool, st.pool_stride)
        return (st.n_maps, side, side)

    def to_dict(self) -> dict:
        """Plain-python form (for checkpoints and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StackConfig:
        """Inverse of :meth:`to_dict`, with the job config's checks: unknown keys, wrong types
        and impossible geometry raise :class:`models.typed_config.ConfigError` (a ValueError)
        naming the field."""
        return build(cls, d)


class RBMStack:
    """Greedily trained stack of :class:`LocalRBM` stages (a DBN with local fields).

    Parameters
    ----------
    config : the geometry.
    update : optimiser settings shared by the stages (a stage's ``learning_rate`` overrides).
    generator : seeds every stage's initialisation and sampling.
    device, dtype : where the parameters live (default CUDA if present, float32).

    Training is the caller's loop, stage by stage, using the update split::

        v = stack.stage_input(frames, k)
        stack.rbms[k].apply_update(stack.rbms[k].compute_update(v))
    """

    def __init__(
        self,
        config: StackConfig,
        *,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.dtype = dtype
        base_update = update if update is not None else UpdateConfig()
        g = device_generator(generator, self.device)
        self.rbms: list[LocalRBM] = []
        for st, shape in zip(config.stages, config.input_shapes(), strict=True):
            upd = base_update
            if st.learning_rate is not None:
                upd = replace(base_update, learning_rate=st.learning_rate)
            self.rbms.append(
                LocalRBM(
                    shape,
                    st.field,
                    st.stride,
                    st.n_maps,
                    visible=st.visible,
                    config=st.rbm_config(),
                    update=upd,
                    generator=g,
                    device=self.device,
                    dtype=dtype,
                )
            )

    @property
    def n_layers(self) -> int:
        """Number of stages."""
        return len(self.rbms)

    @torch.no_grad()
    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 (N, C, H, W) frames -> float in [0, 1] -> LCN; float input skips the scaling."""
        x = torch.as_tensor(frames)
        cfg = self.config
        expected = (cfg.channels, cfg.input_size, cfg.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"frames have shape {tuple(x.shape)}, the stack expects (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]}); resize/convert frames at ingest "
                "(channels/input_size) or change StackConfig"
            )
        if x.dtype == torch.uint8:
            x = x.to(device=self.device, dtype=self.dtype).mul_(1.0 / 255.0)
        else:
            x = x.to(device=self.device, dtype=self.dtype)
        return local_contrast_normalize(x, cfg.input_lcn_sigma)

    def visible_form(self, x: Tensor, stage: int) -> Tensor:
        """Logistic squashing for a Bernoulli-visible stage; identity for Gaussian."""
        if self.config.stages[stage].visible == "bernoulli":
            return torch.sigmoid(x)
        return x

    def _check_layer(self, layer: int) -> None:
        """Clear error for an out-of-range stage index."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer={layer} out of range: the stack has {self.n_layers} stages")

    @torch.no_grad()
    def stage_input(self, x: Tensor, stage: int) -> Tensor:
        """What stage ``stage``'s RBM sees as v, from raw frames ``x`` (uint8 or float)."""
        self._check_layer(stage)
        base = self.preprocess(x) if stage == 0 else self.transform(x, stage - 1)
        return self.visible_form(base, stage)

    @torch.no_grad()
    def features(self, v: Tensor, layer: int) -> Tensor:
        """Stage ``layer``'s output from its own visible input ``v``: LCN(L2pool(P(h|v)))."""
        st = self.config.stages[layer]
        h = self.rbms[layer].mean_hiddens(v)  # (N, K, Ph, Pw)
        pooled = l2_pool(h, st.pool, st.pool_stride)
        return local_contrast_normalize(pooled, st.lcn_sigma)

    @torch.no_grad()
    def transform(self, x: Tensor, layer: int) -> Tensor:
        """Stage ``layer``'s features (N, n_maps, S, S) (after pooling and LCN) of frames ``x``."""
        self._check_layer(layer)
        out = self.features(self.stage_input(x, 0), 0)
        for k in range(1, layer + 1):
            out = self.features(self.visible_form(out, k), k)
        return out

    def state_dict(self) -> dict:
        """{"config": StackConfig as dict, "rbms": [each stage's state_dict]}."""
        return {"config": self.config.to_dict(), "rbms": [r.state_dict() for r in self.rbms]}

    def load_state_dict(self, state: dict) -> None:
        """Restore stage parameters; the saved geometry must equal this stack's."""
        saved = state.get("config")
        if saved is not None and StackConfig.from_dict(saved) != self.config:
            raise ValueError(
                "state_dict was saved from a different StackConfig; build the stack "
                "with RBMStack.load(path) or the saved config"
            )
        if len(state["rbms"]) != self.n_layers:
            raise ValueError(
                f"state_dict has {len(state['rbms'])} stages, stack has {self.n_layers}"
            )
        for rbm, s in zip(self.rbms, state["rbms"], strict=True):
            rbm.load_state_dict(s)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``{"config": StackConfig as dict, "state": state_dict}`` to ``path``: tensors
        and plain values only (:func:`models.state_file.save_state`)."""
        save_state({"config": self.config.to_dict(), "state": self.state_dict()}, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RBMStack:
        """Rebuild a stack saved with :meth:`save`. The file is read with
        ``torch.load(weights_only=True)``: one that names any code raises
        :class:`models.state_file.UnsafeStateFile` and nothing in it runs."""
        return cls.from_saved(load_state(path), device=device, dtype=dtype)

    @classmethod
    def from_saved(
        cls,
        blob: dict,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RBMStack:
        """The stack held by an already-read ``{"config", "state", ...}`` (what :meth:`save`
        writes; ``catneuron train``'s ``model.pt`` adds fields, ignored here)."""
        stack = cls(StackConfig.from_dict(blob["config"]), device=device, dtype=dtype)
        stack.load_state_dict(blob["state"])
        return stack
