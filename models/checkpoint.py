"""Read a trained stack from a run's ``model.pt`` without running code from the file.

``catneuron train`` writes ``{"config", "state", "stages_trained", "job_config"}`` (the
:meth:`models.stack.RBMStack.save` format plus the job's fields); ``torch.load`` with
``weights_only=True`` accepts only tensors and plain containers, so a tampered file cannot
execute anything on load.
"""

from __future__ import annotations

import os

import torch

from models.stack import RBMStack, StackConfig


def load_trained_stack(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[RBMStack, int]:
    """The stack saved at ``path`` and how many of its stages are trained (all when the file
    does not say)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    stack = RBMStack(StackConfig.from_dict(blob["config"]), device=device, dtype=dtype)
    stack.load_state_dict(blob["state"])
    return stack, int(blob.get("stages_trained", stack.n_layers))
