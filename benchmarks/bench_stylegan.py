"""StyleGAN2-ADA on the CPU: generator images/s (32, 64, 256 px; batch 1 and 8) and projection s/step (64, 256 px).

Random-weight generators built by artlab (no pretrained pickle here; speed does not depend
on the weights). Configurations follow the official channel rule channels(res) =
min(channel_base // res, channel_max) (design spec 2.2/2.3), z_dim = w_dim = 512:

* 32 px: the official ``cifar`` config (channel_base 32768, 512 channels at every
  resolution, 2 mapping layers, c_dim 10).
* 64 and 256 px: the official ``auto`` config for resolutions below 512 (channel_base
  16384, channel_max 512, 2 mapping layers): 64 px has 512 channels up to 32 px and 256 at
  64 px; 256 px goes 512 … 512, 256, 128, 64.
* quick mode: the same configs with every channel count divided by 4 (channel_base/4,
  channel_max 128), stated in each row, so the run fits a busy 2-core laptop.

Images/s is for the full generator (mapping + synthesis, noise_mode='const', float32, no
grad), median over repeats. Projection s/step is the median wall time of one step of
``artlab.stylegan.project`` in W with LPIPS-VGG (random VGG16 backbone: the same compute as
the ImageNet one) and noise optimisation, the first step (set-up, kernel warm-up) excluded.
The ratio column batch8/batch1 is images/s at batch 8 over batch 1, measured side by side.
"""

from __future__ import annotations

import statistics
import time

import torch

from artlab.stylegan import Generator, ProjectionSettings, project, z_from_seeds
from run import timeit

CONFIGS = {
    # name: (resolution, c_dim, mapping layers, channel_base, channel_max)
    32: ("cifar", 10, 2, 32768, 512),
    64: ("auto", 0, 2, 16384, 512),
    256: ("auto", 0, 2, 16384, 512),
}


def _generator(res: int, quick: bool) -> tuple[Generator, str]:
    name, c_dim, layers, base, cmax = CONFIGS[res]
    if quick:
        base, cmax = base // 4, cmax // 4
    G = Generator(
        z_dim=512, c_dim=c_dim, w_dim=512, img_resolution=res, img_channels=3,
        mapping_kwargs={"num_layers": layers},
        synthesis_kwargs={"channel_base": base, "channel_max": cmax, "conv_clamp": 256},
        seed=0,
    ).eval().requires_grad_(False)
    channels = "/".join(str(c) for c in G.synthesis.channels_per_resolution.values())
    params = sum(p.numel() for p in G.parameters()) / 1e6
    label = (f"{name}{' ÷4 channels' if quick else ''}: base {base}, max {cmax}, channels {channels}, "
             f"{layers} mapping layers, c_dim {c_dim}, {params:.1f}M params")
    return G, label


def _images_per_s(G: Generator, batch: int, repeat: int) -> float:
    z = z_from_seeds(list(range(batch)), G.z_dim)
    c = torch.nn.functional.one_hot(torch.arange(batch) % max(G.c_dim, 1), G.c_dim).float() if G.c_dim else None

    @torch.no_grad()
    def call():
        G(z, c, noise_mode="const")

    return batch / timeit(call, repeat=repeat, warmup=1)


def _generator_rows(quick: bool) -> list[dict]:
    rows = []
    for res in (32, 64, 256):
        G, label = _generator(res, quick)
        heavy = res == 256
        repeat = (1 if heavy else 3) if quick else (2 if heavy else 5)
        ips = {b: _images_per_s(G, b, repeat) for b in (1, 8)}
        rows.append({
            "case": f"generator {res}px", "config": label, "images_per_s_batch1": ips[1],
            "images_per_s_batch8": ips[8], "batch8/batch1": ips[8] / ips[1], "threads": torch.get_num_threads(),
        })
    return rows


def _projection_rows(quick: bool) -> list[dict]:
    rows = []
    for res in (64, 256):
        G, label = _generator(res, quick)
        target = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(0))
        steps = 3 if quick else 6
        settings = ProjectionSettings(steps=steps, perceptual="lpips-vgg-random", n_w_samples=1000, preview_every=10**6)
        run = project(G, target, settings)
        times = []
        t0 = time.perf_counter()
        for _ in run:
            t1 = time.perf_counter()
            times.append(t1 - t0)
            t0 = time.perf_counter()
        rows.append({
            "case": f"projection {res}px (W, LPIPS-VGG random backbone, noise optimised)", "config": label,
            "s_per_step": statistics.median(times[1:]), "first_step_s": times[0], "steps_timed": len(times) - 1,
            "threads": torch.get_num_threads(),
        })
    return rows


def run(quick: bool = False) -> list[dict]:
    return _generator_rows(quick) + _projection_rows(quick)
