"""The fitted, untrained tensors a stage keeps beside its learner (its whitening)."""

from __future__ import annotations

from torch import Tensor


def loaded_buffers(current: dict[str, Tensor], saved: dict[str, Tensor]) -> dict[str, Tensor]:
    """``saved`` moved to ``current``'s device and dtype, name by name; ValueError naming the
    tensor when a shape differs (a state saved from another geometry)."""
    out = dict(current)
    for k, t in saved.items():
        if k not in current or tuple(t.shape) != tuple(current[k].shape):
            want = tuple(current[k].shape) if k in current else "no such tensor"
            raise ValueError(f"saved whitening {k!r} has shape {tuple(t.shape)}, the stage "
                             f"expects {want}")
        out[k] = t.to(current[k])
    return out
