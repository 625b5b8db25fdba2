"""Backbone forward passes: stopping at the deepest requested layer, and channels_last.

Ratios, measured side by side on the same inputs:
* early stop: features(model, x, ["relu3_1"]) vs the full network through relu5_4
  (goal: clearly cheaper; the saving is what stopping early buys every caller);
* channels_last: VGG-19 forward+backward to relu5_1 with NHWC vs NCHW memory layout
  (style transfer's inner loop; reported ~25% faster on one 2-core CPU, on par here).
"""

from __future__ import annotations

import torch

from artlab.models import backbone, features
from run import timeit


def run(quick: bool = False) -> list[dict]:
    size, repeat = (128, 3) if quick else (224, 5)
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size)
    nhwc = backbone("vgg19", weights=None, channels_last=True)
    nchw = backbone("vgg19", weights=None, channels_last=False)

    shallow = timeit(lambda: features(nhwc, x, ["relu3_1"]), repeat=repeat)
    full = timeit(lambda: features(nhwc, x, ["relu5_4"]), repeat=repeat)

    def fwd_bwd(model):
        def step():
            img = x.clone().requires_grad_(True)
            out = features(model, img, ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
            sum(o.square().mean() for o in out.values()).backward()
        return step

    t_nhwc = timeit(fwd_bwd(nhwc), repeat=repeat, warmup=2)  # oneDNN builds kernels on first calls
    t_nchw = timeit(fwd_bwd(nchw), repeat=repeat, warmup=2)
    return [
        {"case": f"early stop relu3_1 vs relu5_4 @{size}px", "shallow_s": shallow, "full_s": full,
         "speedup": full / shallow},
        {"case": f"channels_last fwd+bwd @{size}px", "nhwc_s": t_nhwc, "nchw_s": t_nchw, "speedup": t_nchw / t_nhwc},
    ]
