"""Feature extraction for activations and domain shift: pipeline vs raw forward vs per-image loops.

Ratios, measured side by side on the same tensors with the same (random-init) VGG-19 at the
default domain-shift layers (relu1_1 … relu5_1 and relu4_2):
* efficiency: ``pooled_features`` (batched, progress bar, pooling inside the loop) vs the raw
  batched ``model.net.features`` forward to the same depth, pooling included (goal >= 0.9);
* vs a naive per-image loop that runs the whole network (convolutions and classifier) once per
  image with forward hooks on the wanted layers, the way most notebook scripts do (goal >= 3x);
* vs the other common script pattern, one forward per image *and per layer*;
* early stop: the forward to the deepest requested layer vs the full network, for shallow
  (relu3_1) and deep (relu5_1) requests.
On a CPU, batching itself buys little (oneDNN already keeps two cores busy with one image);
the 3x over the hook loop comes from stopping early only when the layers are shallow.
"""

from __future__ import annotations

import torch

from artlab.activations import pooled_features
from artlab.models import backbone
from run import timeit


def _stage_index(model, layer: str) -> int:
    return model.layer_names.index(model.resolve_layer(layer))


def _raw_batched(model, x: torch.Tensor, layers: list[str], batch: int) -> dict[str, torch.Tensor]:
    """The hand-written loop: torchvision modules, batched, stop at the deepest layer, pool."""
    wanted = {_stage_index(model, layer): layer for layer in layers}
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            h = model.normalize(x[start:start + batch])
            for i, (_, stage) in enumerate(model._stages[: max(wanted) + 1]):
                h = stage(h)
                if i in wanted:
                    out[wanted[i]].append(h.mean(dim=(2, 3)))
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


def _hook_loop(model, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Naive script: per image, the whole torchvision network with forward hooks."""
    modules = dict(model._stages)
    grabbed: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = [modules[model.resolve_layer(layer)].register_forward_hook(
        lambda _m, _i, out, layer=layer: grabbed[layer].append(out.mean(dim=(2, 3)))) for layer in layers]
    try:
        with torch.inference_mode():
            for i in range(len(x)):
                model.net(model.normalize(x[i:i + 1]))
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.cat(chunks) for layer, chunks in grabbed.items()}


def _per_layer_loop(model, x: torch.Tensor, layers: list[str]) -> None:
    """The other script pattern: a truncated model per layer, run per image."""
    with torch.inference_mode():
        for layer in layers:
            stop = _stage_index(model, layer)
            for i in range(len(x)):
                h = model.normalize(x[i:i + 1])
                for _, stage in model._stages[: stop + 1]:
                    h = stage(h)
                h.mean(dim=(2, 3))


def run(quick: bool = False) -> list[dict]:
    n, size, batch, repeat = (8, 128, 4, 2) if quick else (32, 224, 8, 3)
    model = backbone("vgg19", weights=None, seed=0)
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]

    pipe = timeit(lambda: pooled_features(model, x, layers, size=size, batch_size=batch, progress=False),
                  repeat=repeat)
    raw = timeit(lambda: _raw_batched(model, x, layers, batch), repeat=repeat)
    hooks = timeit(lambda: _hook_loop(model, x, layers), repeat=repeat)
    per_layer = timeit(lambda: _per_layer_loop(model, x, layers), repeat=1, warmup=0)
    # the pipeline and the hand-written loop must agree, or the ratio means nothing
    a = pooled_features(model, x, layers, size=size, batch_size=batch, progress=False)
    b = _raw_batched(model, x, layers, batch)
    worst = max(float((a[layer] - b[layer]).abs().max()) for layer in layers)
    rows = [
        {"case": f"pipeline vs raw batched forward, {n} images @{size}px", "pipeline_img_s": n / pipe,
         "raw_img_s": n / raw, "efficiency": raw / pipe, "max_abs_diff": worst},
        {"case": "pipeline vs per-image hook loop (full net)", "hook_img_s": n / hooks, "speedup": hooks / pipe},
        {"case": "pipeline vs per-image per-layer loop", "per_layer_img_s": n / per_layer,
         "speedup": per_layer / pipe},
    ]
    for deepest in ("relu3_1", "relu5_1"):
        shallow = timeit(lambda: _raw_batched(model, x, [deepest], batch), repeat=repeat)
        full = timeit(lambda: _raw_batched(model, x, ["relu5_4"], batch), repeat=repeat)
        hook_shallow = timeit(lambda: _hook_loop(model, x, [deepest]), repeat=repeat)
        pipe_shallow = timeit(lambda: pooled_features(model, x, [deepest], size=size, batch_size=batch,
                                                      progress=False), repeat=repeat)
        rows.append({"case": f"early stop at {deepest} vs all convolutions", "stop_s": shallow, "full_s": full,
                     "saving": 1 - shallow / full, "pipeline_vs_hook_loop": hook_shallow / pipe_shallow})
    return rows
