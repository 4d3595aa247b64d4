"""RBM throughput: CD-1 steps/s and GFLOP/s against the machine's own matmul and memcpy.

Writes one JSON object (stdout, or ``--out``) with, measured in the same run:

- ``matmul``: float32 ``torch.mm`` / ``torch.bmm`` GFLOP/s at exactly the shapes a CD-1 step uses;
- ``dense``: CD-1 (compute_update + apply_update) of a 1024 x 1024 Bernoulli RBM, batch 256:
  steps/s, GFLOP/s, and the ratio to the matmul figure;
- ``local``: CD-1 of a LocalRBM on 64x64 input, 10x10 fields, stride 2, 8 maps, batch 64:
  steps/s, GFLOP/s, modelled bytes moved per step, GB/s, and a same-run memcpy GB/s;
- ``stage_kinds``: the training steps of the demo config's new stage kinds, at its shapes: the
  tied stage's k-means step (``stage_input`` rows of 64 frames + ``KMeansLearner`` update), a
  tied ConvRBM CD-1 step (1x64x64 input, 32 filters 7x7, batch 64) and the competitive stage's
  step (windows of 64 frames at the config's pyramid sizes, through the tied stage, whitened +
  ``SoftmaxRBM`` CD-1, K = 256, 192 dims), that step as a worker runs it once its frames are
  encoded (``competitive_rbm_cd1_cached``: :class:`models.read_cache.StageInput` cache hits,
  whitened windows sampled, the CD-1 update) and the encoding a frame gets once a run
  (``competitive_encode``: stage 0 at every size, every window whitened by a convolution);
  each step's FLOPs counted by
  ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls and convolutions; elementwise work not counted), its GFLOP/s, and the ratio to a
  large float32 ``torch.matmul`` and to ``conv2d`` at the tied stage's shape, both timed in the
  same run (the whitening and k-means fitted to random frames: the same arithmetic as real ones);
  all with subnormal floats flushed to zero, as a worker computes
  (:func:`cluster.worker.compute_on_this_thread`), and the cached competitive step once more
  with IEEE subnormals (``competitive_rbm_cd1_cached_ieee``) to show what the flush is worth;
- ``sklearn``: seconds per epoch of ``sklearn.neural_network.BernoulliRBM`` and of our
  estimator at equal size: digits-sized (1797 x 64, 256 hidden, batch 10) and 60000 x 784 with
  500 hidden (random binary data of that shape, batch 100), and the speed-up;
- ``ais``: log Z of a 400-visible, 16-hidden RBM trained on 20x20 binarised digits, AIS with its
  defaults against the exact value, and the AIS wall time.

Usage::

    flock /tmp/catneuron-bench.lock python benchmarks/rbm.py --out bench-rbm.json
    python benchmarks/rbm.py --device cuda           # on a GPU machine
    python benchmarks/rbm.py --quick                 # smaller sklearn problem, fewer repeats
    python benchmarks/rbm.py --skip dense,local,sklearn,ais --out stage_kinds.json  # new kinds
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from results_file import cli, emit

from models import BernoulliRBM, BernoulliRBMEstimator, LocalRBM, UpdateConfig
from models.likelihood.estimates import log_partition_ais, log_partition_exact


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (a sync point; no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


THREADS: int | None = None
"""``--threads``: re-applied after each warm-up call. The first call of a numba-parallel kernel
starts numba's OpenMP pool, which resets the process's OpenMP thread count, torch's included
(a ConvRBM step left torch on 2 threads where ``--threads 1`` had set 1), so every figure timed
after it would have run on more threads than the reference it is divided by."""


def best_time(fn, device: torch.device, *, repeat: int, number: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, seconds per call (after one warm-up, and with
    the thread count of ``--threads`` re-applied after it)."""
    fn()
    sync(device)
    if THREADS:
        torch.set_num_threads(THREADS)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def bench_matmul(device, repeat) -> dict:
    """float32 mm at the dense step's shapes and bmm at the local step's shapes."""
    g = torch.Generator(device=device).manual_seed(0)
    n, v, h = 256, 1024, 1024
    a = torch.rand(n, v, device=device, generator=g)
    w = torch.rand(h, v, device=device, generator=g)
    t_up = best_time(lambda: torch.mm(a, w.t()), device, repeat=repeat, number=10)
    dense_gflops = 2 * n * v * h / t_up / 1e9
    P, N, K, D = 28 * 28, 64, 8, 100
    pv = torch.rand(P, N, D, device=device, generator=g)
    wl = torch.rand(P, K, D, device=device, generator=g)
    t_bmm = best_time(lambda: torch.bmm(pv, wl.transpose(1, 2)), device, repeat=repeat, number=10)
    src = torch.rand(P * N * D, device=device, generator=g)
    dst = torch.empty_like(src)
    t_copy = best_time(lambda: dst.copy_(src), device, repeat=repeat, number=10)
    return {
        "dense_mm_256x1024x1024_gflops": dense_gflops,
        "local_bmm_784x(64x100 @ 100x8)_gflops": 2 * P * N * K * D / t_bmm / 1e9,
        "memcpy_20MB_gbps": 2 * src.numel() * 4 / t_copy / 1e9,
    }


def bench_dense(device, repeat, mm_gflops) -> dict:
    """CD-1 steps/s of a 1024 x 1024 BernoulliRBM at batch 256."""
    g = torch.Generator(device=device).manual_seed(1)
    rbm = BernoulliRBM(1024, 1024, device=device, generator=g, update=UpdateConfig())
    v = (torch.rand(256, 1024, device=device, generator=g) < 0.3).float()

    def step():
        rbm.apply_update(rbm.compute_update(v))

    t = best_time(step, device, repeat=repeat, number=5)
    flops = 5 * 2 * 256 * 1024 * 1024  # up, down, up, two gradient products
    gflops = flops / t / 1e9
    return {
        "shape": "1024 visible x 1024 hidden, batch 256, CD-1",
        "seconds_per_step": t,
        "steps_per_s": 1 / t,
        "gflop_per_step": flops / 1e9,
        "gflops": gflops,
        "fraction_of_matmul": gflops / mm_gflops,
    }


def local_bytes_per_step(P: int, N: int, K: int, D: int, pixels: int, fused: bool = True) -> int:
    """Modelled DRAM traffic of one local CD-1 step (float32), counting each big pass once.

    Weights (P, K, D): read by the two up passes and the down pass, the gradient written, and
    read by the updater with W and the velocity read and written (8 passes; 9 with the fused
    gradient, which writes dW without a separate scaling pass).
    ``fused`` (numba kernels, models/kernels/local.py): no patch matrices; the batch-last image of
    both phases (pixels, 2N) is written (copy of v0, down pass), read by the up passes, the
    gradient and the bias gradient; the hidden probabilities (P, K, 2N) are written by the up
    passes and read by the gradient, the hidden samples (P, K, N) written and read once.
    ``fused=False`` (torch path): patch matrices (P, N, D) dominate: unfold writes them (x2:
    data and sample), the up bmm reads them (x2), the gradient reads them (x2), the down bmm
    writes its (P, D, N) product and the fold reads it.
    """
    weights = P * K * D * 4
    if fused:
        image = 9 * N * pixels * 4  # v0 copy read+write, v_k write, 2 up, gradient, db reads
        hidden = (2 * P * K * 2 * N + 2 * P * K * N) * 4
        return 9 * weights + image + hidden
    patches = P * N * D * 4
    small = (P * N * K * 6 + N * pixels * 6) * 4
    return 6 * patches + 2 * patches + 8 * weights + small


def bench_local(device, repeat, memcpy_gbps) -> dict:
    """CD-1 steps/s of a LocalRBM: 64x64 input, 10x10 fields, stride 2, 8 maps, batch 64.

    The default backend (fused numba kernels on CPU) and, back to back in the same run, the
    torch formulation (unfold + bmm + fold, the CUDA path) as the baseline.
    """
    P, K, D, N = 28 * 28, 8, 100, 64
    flops = 5 * 2 * P * N * K * D

    def measure(backend: str) -> dict:
        g = torch.Generator(device=device).manual_seed(2)
        rbm = LocalRBM(
            (1, 64, 64), 10, 2, 8, device=device, generator=g, update=UpdateConfig(),
            backend=backend,
        )
        v = (torch.rand(64, 1, 64, 64, device=device, generator=g) < 0.3).float()

        def step():
            rbm.apply_update(rbm.compute_update(v))

        t0 = time.perf_counter()
        step()  # first call: numba compiles or loads its cache here
        sync(device)
        first = time.perf_counter() - t0
        t = best_time(step, device, repeat=repeat, number=3)
        fused = rbm.backend == "numba"
        nbytes = local_bytes_per_step(P, N, K, D, 64 * 64, fused=fused)
        return {
            "backend": "numba (fused kernels)" if fused else "torch (unfold + bmm + fold)",
            "first_step_s": first,
            "seconds_per_step": t,
            "steps_per_s": 1 / t,
            "gflops": flops / t / 1e9,
            "modelled_bytes_per_step": nbytes,
            "achieved_gbps": nbytes / t / 1e9,
        }

    out = {
        "shape": "64x64x1 input, 10x10 fields, stride 2 (28x28 positions), 8 maps, batch 64",
        "gflop_per_step": flops / 1e9,
        "memcpy_gbps_same_run": memcpy_gbps,
    }
    fast = measure("auto")
    out.update(fast)
    if fast["backend"].startswith("numba"):
        base = measure("torch")
        out["torch_backend"] = base
        out["speedup_vs_torch_backend"] = base["seconds_per_step"] / fast["seconds_per_step"]
    return out


def epoch_times(X: np.ndarray, n_components: int, batch_size: int, device, n_epochs: int) -> dict:
    """Seconds per epoch of sklearn's BernoulliRBM and ours on the same array (float32 both)."""
    from sklearn.neural_network import BernoulliRBM as SkRBM

    hp = dict(
        n_components=n_components,
        batch_size=batch_size,
        n_iter=n_epochs,
        learning_rate=0.05,
        random_state=0,
    )
    t0 = time.perf_counter()
    SkRBM(**hp).fit(X)
    t_sk = (time.perf_counter() - t0) / n_epochs
    ours = BernoulliRBMEstimator(**hp, device=device)
    ours.fit(X[: batch_size * 2])  # warm-up (allocator, thread pool)
    sync(device)
    t0 = time.perf_counter()
    ours.fit(X)
    sync(device)
    t_ours = (time.perf_counter() - t0) / n_epochs
    floor = gemm_floor_s_per_epoch(X.shape[0], X.shape[1], n_components, batch_size)
    return {
        "data": f"{X.shape[0]} x {X.shape[1]} {X.dtype}",
        "n_components": n_components,
        "batch_size": batch_size,
        "epochs_timed": n_epochs,
        "sklearn_s_per_epoch": t_sk,
        "ours_s_per_epoch": t_ours,
        "speedup": t_sk / t_ours,
        "gemm_floor_s_per_epoch": floor,
        "speedup_ceiling_at_gemm_floor": t_sk / floor,
        "gemm_floor_note": "the 5 bare float32 matrix products of one CD-1 epoch at these shapes "
        "(no sigmoid, sampling or update), best of torch.mm and numpy's BLAS, same threads: "
        "no CD-1 implementation on this CPU can be faster per epoch",
    }


def gemm_floor_s_per_epoch(n: int, n_visible: int, n_hidden: int, batch: int) -> float:
    """Seconds for the 5 matrix products of one CD-1 epoch alone (h = vW, v = hW^T, h' = v'W,
    and the two gradient products), float32, output buffers reused, best of torch and numpy."""
    rng = np.random.default_rng(0)
    v = rng.random((batch, n_visible), dtype=np.float32)
    W = rng.random((n_visible, n_hidden), dtype=np.float32)
    h = np.empty((batch, n_hidden), np.float32)
    vv = np.empty((batch, n_visible), np.float32)
    dW = np.empty((n_visible, n_hidden), np.float32)
    tv, tW, th, tvv, tdW = (torch.from_numpy(a) for a in (v, W, h, vv, dW))

    def numpy_batch():
        np.dot(v, W, out=h)
        np.dot(h, W.T, out=vv)
        np.dot(vv, W, out=h)
        np.dot(v.T, h, out=dW)
        np.dot(vv.T, h, out=dW)

    def torch_batch():
        torch.mm(tv, tW, out=th)
        torch.mm(th, tW.t(), out=tvv)
        torch.mm(tvv, tW, out=th)
        torch.mm(tv.t(), th, out=tdW)
        torch.mm(tvv.t(), th, out=tdW)

    n_batches = -(-n // batch)
    number = max(1, min(n_batches, 2000))
    per_batch = min(best_time(f, torch.device("cpu"), repeat=5, number=number)
                    for f in (numpy_batch, torch_batch))
    return per_batch * n_batches


def step_flops(fn) -> int:
    """Matmul and convolution FLOPs of one call of ``fn`` (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def timed_gflops(fn, device, repeat: int, number: int) -> dict:
    """Seconds per call of ``fn`` (best of ``repeat``), its counted FLOPs and GFLOP/s, and the
    torch threads it was timed on."""
    flops = step_flops(fn)
    seconds = best_time(fn, device, repeat=repeat, number=number)
    return {"seconds_per_step": seconds, "flops_per_step": flops, "gflops": flops / seconds / 1e9,
            "torch_threads": torch.get_num_threads()}


def demo_stack(device):
    """The demo config's stack, each stage prepared (whitening, initial units) on random frames,
    and a batch of 64 random uint8 frames."""
    from jobs.config import load
    from models.stack import RBMStack

    config = load("demo")
    stack = RBMStack(config.model, update=config.update,
                     generator=torch.Generator().manual_seed(0), device=device)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(256, (config.data.batch_size, *stack.config.input_shapes()[0]),
                           generator=g, dtype=torch.uint8)
    for k in range(stack.n_layers):
        stack.prepare(k, torch.randint(256, (512, *frames.shape[1:]), generator=g,
                                       dtype=torch.uint8).to(device), generator=g)
    return config, stack, frames.to(device)


def encode_timing(fn, stack, n_frames: int, device, repeat: int) -> dict:
    """:func:`timed_gflops` of the competitive stage 1's encoding of ``n_frames`` frames, with
    the FLOPs of every level it whitened by FFT (which torch's counter does not see) counted as
    the direct convolution's, ``2 C r^2 d`` a window: ``whitening_fft_flops_added``."""
    from models.read_cache import encoded_shapes

    out = timed_gflops(fn, device, repeat, 1)
    st, config = stack.stages[1], stack.config
    r, added = config.stages[1].field, 0
    for (C, H, W), (d, P, Q) in zip(config.level_shapes(1), encoded_shapes(config, 1),
                                    strict=True):
        if st.whiten_conv.uses_fft(torch.empty(1, C, H, W, device=device)):
            added += 2 * C * r * r * d * P * Q * n_frames
    out["whitening_fft_flops_added"] = added
    out["flops_per_step"] += added
    out["gflops"] = out["flops_per_step"] / out["seconds_per_step"] / 1e9
    return out


def bench_stage_kinds(device, repeat) -> dict:
    """The demo's tied and competitive stage steps against same-run matmul and conv2d, with
    subnormals flushed as a worker flushes them; IEEE arithmetic restored after."""
    torch.set_flush_denormal(True)
    try:
        return stage_kind_steps(device, repeat)
    finally:
        torch.set_flush_denormal(False)


def stage_kind_steps(device, repeat) -> dict:
    """:func:`bench_stage_kinds`' timings (under whatever subnormal mode the caller set)."""
    from models.stages.tied import PerPositionConvRBM

    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(2048, 2048, device=device, generator=g) for _ in range(2))
    mm = timed_gflops(lambda: torch.matmul(a, b), device, repeat, 3)
    config, stack, frames = demo_stack(device)
    tied, comp = config.model.stages[0], config.model.stages[1]
    x = stack.normalise_input(stack.unit_frames(frames))  # (64, 1, 64, 64)
    w = torch.randn(tied.n_maps, x.shape[1], tied.field, tied.field, device=device, generator=g)
    conv = timed_gflops(lambda: torch.nn.functional.conv2d(x, w), device, repeat, 5)
    conv_rbm = PerPositionConvRBM(x.shape[1], tied.field, tied.n_maps, stride=tied.stride,
                                  visible="gaussian", config=tied.rbm_config(),
                                  update=config.update, device=device,
                                  generator=torch.Generator().manual_seed(0))

    def stage_step(k):
        return lambda: cd_step(stack.rbms[k], stack.stage_input(frames, k))

    steps = {
        "tied_kmeans": {"what": f"stage_input(64 frames, 0): {tied.rows_per_frame} whitened "
                                f"{tied.field}x{tied.field} patches per frame + KMeansLearner "
                                f"update, K = {tied.n_maps}",
                        **timed_gflops(stage_step(0), device, repeat, 5)},
        "tied_conv_rbm_cd1": {"what": f"ConvRBM CD-1 (gaussian visibles), input "
                                      f"{list(x.shape)}, {tied.n_maps} filters "
                                      f"{tied.field}x{tied.field}, stride {tied.stride}",
                              **timed_gflops(lambda: cd_step(conv_rbm, x), device, repeat, 2)},
        "competitive_rbm_cd1": {"what": f"stage_input(64 frames, 1): tied stage at sizes "
                                        f"{list(comp.sizes)}, {comp.rows_per_frame} "
                                        f"{comp.field}x{comp.field} windows per frame whitened "
                                        f"to {comp.dims} + SoftmaxRBM CD-1, K = {comp.n_maps}",
                                **timed_gflops(stage_step(1), device, repeat, 2)},
        **cached_competitive_steps(stack, frames, device, repeat),
    }
    for name, k in (("tied_kmeans", 0), ("competitive_rbm_cd1", 1)):  # where the time goes
        rows = stack.stage_input(frames, k)
        steps[name]["rows_only"] = timed_gflops(lambda k=k: stack.stage_input(frames, k),
                                                device, repeat, 2)
        steps[name]["learner_only"] = timed_gflops(
            lambda k=k, rows=rows: cd_step(stack.rbms[k], rows), device, repeat, 5)
        steps[name]["rows_per_step"] = len(rows)
    for r in steps.values():
        r["ratio_to_matmul"] = r["gflops"] / mm["gflops"]
        r["ratio_to_conv2d"] = r["gflops"] / conv["gflops"]
    cd_mm = softmax_cd_gemms(steps["competitive_rbm_cd1"]["rows_per_step"], comp.dims,
                             comp.n_maps, device, repeat, g)
    for name in ("competitive_rbm_cd1", "competitive_rbm_cd1_cached",
                 "competitive_rbm_cd1_cached_ieee"):
        steps[name]["ratio_to_its_gemms"] = steps[name]["gflops"] / cd_mm["gflops"]
    return {"matmul_2048_fp32": mm, "softmax_cd1_gemms": cd_mm,
            "conv2d_fp32": {"shape": f"{list(x.shape)} * {list(w.shape)}", **conv},
            "steps": steps, "goal": "ratio >= 0.5", "flush_denormal": True,
            "flop_count": "torch.utils.flop_counter.FlopCounterMode: matmuls and convolutions "
                          "(forward and weight gradients); elementwise work not counted"}


def cd_step(learner, rows) -> None:
    """One training step of a stage's learner on ``rows``: its update, applied."""
    learner.apply_update(learner.compute_update(rows))


@contextmanager
def ieee_subnormals() -> Iterator[None]:
    """IEEE subnormal arithmetic inside; flushed again after (how the stage kinds are timed)."""
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(True)


def cached_competitive_steps(stack, frames, device, repeat) -> dict:
    """The competitive stage's step as a worker runs it once its frames are encoded (flushed
    and with IEEE subnormals), and the encoding each frame gets once a run."""
    from models.read_cache import StageInput

    comp = stack.config.stages[1]
    reader = StageInput(stack, 1, 2**31)
    cpu_frames = frames.cpu().numpy()
    reader.rows(cpu_frames)  # every later call is a hit

    def cached_step():
        cd_step(stack.rbms[1], reader.rows(cpu_frames))

    steps = {"competitive_rbm_cd1_cached": {
        "what": "competitive_rbm_cd1 as a worker runs it after its first epoch: the 64 frames' "
                "whitened windows read from its cache (models.read_cache.StageInput; each "
                "frame encoded once a run), 40 sampled and normalised a frame, then the RBM",
        **timed_gflops(cached_step, device, repeat, 5)}}
    with ieee_subnormals():
        steps["competitive_rbm_cd1_cached_ieee"] = {
            "what": "competitive_rbm_cd1_cached with IEEE subnormals (not flushed)",
            **timed_gflops(cached_step, device, repeat, 5)}
    steps["competitive_encode"] = {
        "what": "the cache's encoding of 64 frames, paid once a frame a run: stage 0 at "
                f"{list(comp.sizes)}, then every {comp.field}x{comp.field} window of each level "
                f"whitened to {comp.dims} values (a convolution per level, by FFT on a CPU); "
                "the whitening's FLOPs are those of the direct convolution it replaces (the "
                "counter sees none in the FFT form), so the rate is an effective one",
        **encode_timing(lambda: reader.cache.encode(cpu_frames), stack, len(cpu_frames), device,
                        repeat)}
    return steps


def softmax_cd_gemms(n: int, d: int, k: int, device, repeat: int, g) -> dict:
    """The four float32 products of a SoftmaxRBM CD-1 step, alone, at its shapes: the hidden
    input ``c + v W^T`` (n, d) x (d, k) of the data and of the chain, and the sums ``p^T v``
    (k, n) x (n, d) of each: the most a step of these shapes can reach."""
    v, w = (torch.randn(n, d, device=device, generator=g), torch.randn(k, d, device=device,
                                                                        generator=g))
    c, p = torch.randn(k, device=device, generator=g), torch.rand(n, k, device=device,
                                                                  generator=g)

    def four():
        for _ in range(2):
            torch.addmm(c, v, w.t())
            torch.mm(p.t(), v)

    return {"shapes": f"2 x ({n}x{d} @ {d}x{k}) + 2 x ({k}x{n} @ {n}x{d})",
            **timed_gflops(four, device, repeat, 5)}


def bench_sklearn(device, quick) -> dict:
    """Epoch time vs scikit-learn: digits-sized and 60000 x 784 (random binary), float32."""
    from sklearn.datasets import load_digits

    digits = (load_digits().data / 16.0).astype(np.float32)
    out = {"digits": epoch_times(digits, 256, 10, device, n_epochs=3 if quick else 10)}
    rng = np.random.RandomState(0)
    n = 10000 if quick else 60000
    big = (rng.rand(n, 784) < 0.13).astype(np.float32)  # random binary, MNIST-like density
    out["mnist_sized"] = epoch_times(big, 500, 100, device, n_epochs=1)
    out["mnist_sized"]["note"] = "random binary data of MNIST's shape (no download)"
    return out


def bench_ais(device, seeds=(0, 1, 2)) -> dict:
    """AIS defaults on 400-visible, 16-hidden RBMs trained on binarised 20x20 digits.

    One model per training seed: AIS accuracy depends on the model (how peaked it is), so a
    single model says little; the exact log Z by enumeration over the 2^16 hidden states is the
    ground truth for each.
    """
    from sklearn.datasets import load_digits

    img = torch.tensor(load_digits().data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    big = torch.nn.functional.interpolate(img, size=(20, 20), mode="bilinear")
    data = (big.reshape(-1, 400) > 0.35).float()
    models = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        rbm = BernoulliRBM(
            400,
            16,
            device="cpu",
            generator=g,
            update=UpdateConfig(learning_rate=0.05, momentum_switch_step=100),
        )
        for _epoch in range(20):
            for s in range(0, len(data), 50):
                rbm.apply_update(rbm.compute_update(data[s : s + 50]))
        t0 = time.perf_counter()
        exact = log_partition_exact(rbm)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        est, stderr = log_partition_ais(rbm, data=data, generator=torch.Generator().manual_seed(1))
        t_ais = time.perf_counter() - t0
        models.append({
            "training_seed": seed,
            "exact_log_z": exact,
            "exact_seconds": t_exact,
            "ais_log_z": est,
            "ais_stderr": stderr,
            "ais_abs_error": abs(est - exact),
            "ais_seconds": t_ais,
        })
    errors = sorted(m["ais_abs_error"] for m in models)
    return {
        "model": "400 visible x 16 hidden, CD-1 20 epochs on binarised 20x20 digits",
        "ais_settings": "defaults: 250 runs, 14500 temperatures (Salakhutdinov & Murray 2008)",
        "models": models,
        "median_abs_error": errors[len(errors) // 2],
        "max_abs_error": errors[-1],
        "max_ais_seconds": max(m["ais_seconds"] for m in models),
    }


SECTIONS = {"dense", "local", "stage_kinds", "sklearn", "ais"}  # what --skip may name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=5, help="best-of repeats per timing")
    parser.add_argument("--quick", action="store_true", help="smaller sklearn problem")
    parser.add_argument(
        "--skip", default="",
        help=f"comma list of sections to skip: {','.join(sorted(SECTIONS))}",
    )
    parser.add_argument("--out", default=None, help="write the JSON here (also printed)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda asked but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.threads:
        global THREADS
        THREADS = args.threads
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - SECTIONS
    if unknown:
        parser.error(f"--skip {','.join(sorted(unknown))}: not a section (choose among "
                     f"{','.join(sorted(SECTIONS))})")
    result: dict = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul": bench_matmul(device, args.repeat),
    }
    mm = result["matmul"]
    if "dense" not in skip:
        result["dense"] = bench_dense(device, args.repeat, mm["dense_mm_256x1024x1024_gflops"])
    if "local" not in skip:
        result["local"] = bench_local(device, args.repeat, mm["memcpy_20MB_gbps"])
    if "stage_kinds" not in skip:
        result["stage_kinds"] = bench_stage_kinds(device, args.repeat)
    if "sklearn" not in skip:
        result["sklearn"] = bench_sklearn(device, args.quick)
    if "ais" not in skip:
        result["ais"] = bench_ais(device)
    emit(result, args.out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
