"""Small real datasets for cluster tests: numpy frames written with the pipeline's ShardWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.shards import ShardWriter, commit_video, empty_manifest, write_manifest

SHAPES = {"W": (10, 3, 4), "c": (10, 3), "b": (1, 6, 6)}  # a LocalRBM: P=10, K=3, C*r*r=4


def random_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """Standard-normal tensors of :data:`SHAPES` (parameters or updates of a small LocalRBM)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}


def make_frames(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 (n, size, size, 1) frames: a few soft oriented bars on noise (learnable structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((n, size, size, 1), np.uint8)
    for i in range(n):
        img = rng.normal(0.0, 0.05, (size, size)).astype(np.float32)
        for _ in range(3):
            theta = rng.uniform(0, np.pi)
            cx, cy = rng.uniform(0, size, 2)
            d = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            img += np.exp(-(d**2) / (2 * (size / 16) ** 2)) * rng.uniform(0.5, 1.0)
        img = (img - img.min()) / (np.ptp(img) + 1e-6)
        frames[i, :, :, 0] = (img * 255).astype(np.uint8)
    return frames


def make_dataset(root: str | Path, *, n_videos: int = 4, frames_per_video: int = 96,
                 size: int = 16, shard_rows: int = 48, seed: int = 0) -> Path:
    """A dataset folder of ``n_videos`` sources, ``shard_rows`` frames per Parquet shard."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = empty_manifest({"input_size": size})
    for v in range(n_videos):
        frames = make_frames(frames_per_video, size, seed * 1000 + v)
        with ShardWriter(root, f"video{v}", max_rows=shard_rows) as writer:
            writer.write(f"video{v}", frames, np.arange(frames_per_video),
                         np.arange(frames_per_video) * 40.0)
            shards = writer.finalize()
        commit_video(manifest, {"source": f"video{v}", "status": "ok"}, shards)
    write_manifest(root, manifest)
    return root


def saved_random_stack(path, seed: int):
    """A two-stage local stack on 16x16 frames (6x6 fields, stride 2, 3 maps, pool 2; then 2x2
    fields, 2 maps, pool 2), weights N(0, 0.3^2) from ``seed``, saved to ``path``; returned."""
    import torch

    from models.stack import RBMStack, StackConfig, StageConfig

    config = StackConfig(input_size=16, channels=1, stages=(
        StageConfig(field=6, stride=2, n_maps=3, pool=2),
        StageConfig(field=2, stride=1, n_maps=2, pool=2)))
    g = torch.Generator().manual_seed(seed)
    stack = RBMStack(config, generator=g, device="cpu")
    for rbm in stack.rbms:
        rbm.params["W"].normal_(0.0, 0.3, generator=g)
    stack.save(path)
    return stack
