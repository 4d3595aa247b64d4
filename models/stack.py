"""A stack of stages (a Deep Belief Network when they are RBMs), trained greedily stage by stage.

Each stage is one of :mod:`models.stages`' kinds: ``local`` (an untied RBM -> L2 pooling -> local
contrast normalisation, Le et al. 2012 with RBMs in place of their sparse autoencoders),
``tied`` (one filter bank over every position -> pooling) or ``competitive`` (whitened windows of
the stage below at every position and pyramid size -> competing units -> max over all). Greedy
layer-wise training as in Hinton, Osindero & Teh (2006): stage k's learner trains on
``stage_input(x, k)``, made from what stage k reads (:meth:`RBMStack.reads`): the frames scaled
to [0, 1] and contrast-normalised (``input_lcn_sigma``; 0 = not normalised) for k = 0, else
stage k-1's output; a competitive stage with ``sizes`` reads stages 0..k-1 run on each size of
an image pyramid of the frame. The paper's geometry (200x200 input, 18x18 fields, 8 maps, 5x5
pooling, 3 stages) is::

    StackConfig(input_size=200, channels=3, stages=(StageConfig(field=18, n_maps=8, pool=5),) * 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor

from models.layers import local_contrast_normalize
from models.pooling import pyramid
from models.rbm.dense import device_generator, resolve_device
from models.rbm.optim import UpdateConfig
from models.stages import build_stage
from models.stages.config import StageConfig, check_stage, stage_shapes
from models.state_file import DamagedStateFile, holding, load_state, save_state
from models.typed_config import build

__all__ = ["RBMStack", "StackConfig", "StageConfig"]


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
        if not self.input_lcn_sigma >= 0:
            raise ValueError(f"input_lcn_sigma={self.input_lcn_sigma} must be >= 0 (0: off)")
        if not stages:
            raise ValueError("stages is empty: give at least one StageConfig")
        for i, st in enumerate(stages):
            if not isinstance(st, StageConfig):
                raise ValueError(f"stages[{i}] must be a StageConfig or dict, got {type(st)}")
            if st.sizes and any(b.kind != "tied" for b in stages[:i]):
                raise ValueError(f"stages[{i}].sizes: the stages below a pyramid must be tied "
                                 "(they run at every size)")
            for size in st.sizes:  # the stages below run at each size too
                shape = (self.channels, size, size)
                for j, below in enumerate(stages[:i]):
                    check_stage(below, shape, f"stages[{j}] (at stages[{i}].sizes {size})",
                                top=False)
                    shape = stage_shapes(below, shape)["output"]
            for shape in self.level_shapes(i):
                check_stage(st, shape, f"stages[{i}]", top=i == len(stages) - 1)

    def level_shapes(self, stage: int) -> list[tuple[int, int, int]]:
        """(C, H, W) that stage ``stage`` reads at each of its levels (one unless it has
        ``sizes``)."""
        sizes = self.stages[stage].sizes or (self.input_size,)
        out = []
        for size in sizes:
            shape = (self.channels, size, size)
            for st in self.stages[:stage]:
                shape = stage_shapes(st, shape)["output"]
            out.append(shape)
        return out

    def input_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) that each stage reads (its first level, for a pyramid stage)."""
        return [self.level_shapes(k)[0] for k in range(len(self.stages))]

    def layer_shapes(self, stage: int) -> dict[str, tuple[int, int, int]]:
        """``{"hidden"?, "output"}`` (C, H, W) of stage ``stage`` (at its first level)."""
        return stage_shapes(self.stages[stage], self.input_shapes()[stage])

    def output_shape(self, layer: int) -> tuple[int, int, int]:
        """(C, H, W) of stage ``layer``'s output (what the stage above reads)."""
        return self.layer_shapes(layer)["output"]

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
    """Greedily trained stack of stages (:mod:`models.stages`).

    Parameters
    ----------
    config : the geometry.
    update : optimiser settings shared by the stages (a stage's ``learning_rate`` overrides).
    generator : seeds every stage's initialisation and sampling.
    device, dtype : where the parameters live (default CUDA if present, float32).

    Training is the caller's loop, stage by stage, using the update split::

        stack.prepare(k, frames)  # stages that fit something to data first (whitening)
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
        self.stages = []
        for st, shape in zip(config.stages, config.input_shapes(), strict=True):
            upd = base_update
            if st.learning_rate is not None:
                upd = replace(base_update, learning_rate=st.learning_rate)
            self.stages.append(build_stage(st, shape, update=upd, generator=g,
                                           device=self.device, dtype=dtype))

    @property
    def rbms(self) -> list:
        """Each stage's learner (an RBM, or k-means with the same training interface)."""
        return [s.learner for s in self.stages]

    @property
    def n_layers(self) -> int:
        """Number of stages."""
        return len(self.stages)

    def unit_frames(self, frames: Tensor) -> Tensor:
        """uint8 (N, C, H, W) frames -> float in [0, 1] on the stack's device; float input is
        taken as already scaled. The shape must be the config's. Always in the contiguous
        memory format: a numpy batch with one channel may carry strides torch reads as
        channels-last, and convolutions then take another path whose rounding differs, so the
        same frames would give other last bits depending on how their array was made."""
        x = torch.as_tensor(frames)
        cfg = self.config
        expected = (cfg.channels, cfg.input_size, cfg.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"frames have shape {tuple(x.shape)}, the stack expects (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]}); resize/convert frames at ingest "
                "(channels/input_size) or change StackConfig"
            )
        layout = {"device": self.device, "dtype": self.dtype,
                  "memory_format": torch.contiguous_format}
        if x.dtype == torch.uint8:
            return x.to(**layout).mul_(1.0 / 255.0)
        return x.to(**layout)

    def normalise_input(self, x: Tensor) -> Tensor:
        """Local contrast normalisation of [0, 1] frames (identity when ``input_lcn_sigma`` is
        0); differentiable."""
        sigma = self.config.input_lcn_sigma
        return local_contrast_normalize(x, sigma) if sigma > 0 else x

    @torch.no_grad()
    def preprocess(self, frames: Tensor) -> Tensor:
        """What stage 0 reads: :meth:`normalise_input` of :meth:`unit_frames`."""
        return self.normalise_input(self.unit_frames(frames))

    def _check_layer(self, layer: int) -> None:
        """Clear error for an out-of-range stage index."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer={layer} out of range: the stack has {self.n_layers} stages")

    def walk(self, x: Tensor, *, differentiable: bool = False
             ) -> Iterator[tuple[int, dict[str, Tensor]]]:
        """``(k, stage k's layers)`` for every stage in order, from float frames ``x`` in
        [0, 1] (N, C, S, S): one up-pass; a pyramid stage runs the stages below it again on
        each size. ``differentiable``: plain torch ops, so gradients in ``x`` exist."""
        v = self.normalise_input(x)
        for k, stage in enumerate(self.stages):
            read = self._levels(x, k, differentiable) if stage.config.sizes else v
            if stage.config.kind == "competitive" and not stage.config.sizes:
                read = [read]
            maps = (stage.differentiable_maps if differentiable else stage.maps)(read)
            yield k, maps
            v = maps[stage.output_layer]

    def _levels(self, x: Tensor, stage: int, differentiable: bool) -> list[Tensor]:
        """Stage ``stage - 1``'s output on each pyramid size of ``x`` (the stage's levels)."""
        out = []
        for level in pyramid(x, self.config.stages[stage].sizes):
            v = self.normalise_input(level)
            for below in self.stages[:stage]:
                maps = below.differentiable_maps(v) if differentiable else below.maps(v)
                v = maps[below.output_layer]
            out.append(v)
        return out

    @torch.no_grad()
    def reads(self, frames: Tensor, stage: int):
        """What stage ``stage`` reads from uint8/float frames: a tensor (N, C, H, W), or a list
        of levels for a competitive stage."""
        self._check_layer(stage)
        return self._reads(self.unit_frames(frames), stage, False)

    def differentiable_reads(self, x: Tensor, stage: int):
        """:meth:`reads` from float frames ``x`` in [0, 1] (N, C, S, S) in plain torch ops, as
        :meth:`walk` with ``differentiable`` hands them to stage ``stage``: gradients in ``x``
        exist."""
        self._check_layer(stage)
        return self._reads(x, stage, True)

    def _reads(self, x: Tensor, stage: int, differentiable: bool):
        """Stage ``stage``'s input from float frames ``x``: its levels, or the stages below."""
        st = self.config.stages[stage]
        if st.sizes:
            return self._levels(x, stage, differentiable)
        v = self.normalise_input(x)
        for below in self.stages[:stage]:
            maps = below.differentiable_maps(v) if differentiable else below.maps(v)
            v = maps[below.output_layer]
        return [v] if st.kind == "competitive" else v

    @torch.no_grad()
    def stage_input(self, frames: Tensor, stage: int,
                    generator: torch.Generator | None = None) -> Tensor:
        """What stage ``stage``'s learner trains on, from raw frames (uint8 or float);
        ``generator`` draws the rows a stage samples (default: its learner's)."""
        return self.stages[stage].rows(self.reads(frames, stage), generator)

    @torch.no_grad()
    def prepare(self, stage: int, frames: Tensor, *, weights: str = "exemplar",
                generator: torch.Generator | None = None) -> None:
        """Fit stage ``stage``'s data-dependent parts (whitening) on ``frames`` and set its
        initial weights (``"exemplar"``: from the data; ``"random"``: keep the random ones)."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.stages[stage].prepare(self.reads(frames, stage), weights, g)

    @torch.no_grad()
    def transform(self, frames: Tensor, layer: int) -> Tensor:
        """Stage ``layer``'s output (what the stage above reads) from frames (uint8/float)."""
        self._check_layer(layer)
        for k, maps in self.walk(self.unit_frames(frames)):
            if k == layer:
                return maps[self.stages[k].output_layer]
        raise AssertionError("unreachable")

    def state_dict(self) -> dict:
        """{"config": StackConfig as dict, "rbms": [each stage's state_dict]}."""
        return {"config": self.config.to_dict(), "rbms": [s.state_dict() for s in self.stages]}

    def load_state_dict(self, state: dict) -> None:
        """Restore stage parameters; the saved geometry must equal this stack's (a state that
        is not a mapping with a list of ``rbms``: :class:`models.state_file.DamagedStateFile`)."""
        holding(state, ("rbms",), "the saved state")
        if not isinstance(state["rbms"], list):
            raise DamagedStateFile("the saved state's 'rbms' is not a list of stages: it was "
                                   "not loaded; use a file catneuron wrote")
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
        for k, (stage, s) in enumerate(zip(self.stages, state["rbms"], strict=True)):
            try:
                stage.load_state_dict(s)
            except (AttributeError, KeyError, TypeError) as exc:  # a field of the wrong kind
                raise DamagedStateFile(
                    f"the saved state's stage {k} is not what catneuron writes "
                    f"({type(exc).__name__}: {str(exc)[:80]}): it was not loaded; use a file "
                    "catneuron wrote") from None

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
        holding(blob, ("config", "state"), "the saved model")
        stack = cls(StackConfig.from_dict(blob["config"]), device=device, dtype=dtype)
        stack.load_state_dict(blob["state"])
        return stack
