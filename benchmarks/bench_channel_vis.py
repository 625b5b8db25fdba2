"""Channel visualisation: artlab's visualize (Fourier image, decorrelated colour, random transforms) vs a plain pixel loop.

Side by side in one run, same model (``best_backbone()``), same objective (the mean activation of one
channel of a middle inspect layer), same steps and size (256 steps at 128 px; quick: 48 steps at 96 px):
* artlab's :func:`artlab.explain.visualize` (Olah et al. 2017's recipe);
* the loop a competent user writes: Adam (lr 0.05) on raw pixels started at mid-grey plus small seeded
  noise, clamped to [0, 1] after every step, no parameterisation and no transforms.
Reported: seconds for each and their ratio (artlab / plain: the price of the transforms and the FFT), and the
objective each final image reaches, evaluated twice: on the image as it is, and averaged over 16 random
transforms (jitter/scale/rotate). The plain loop usually wins the first (it optimises exactly that) and
loses the second: its pattern is high-frequency and breaks under a few pixels of shift, which is why the
paper's images look like something and the plain loop's do not.
"""

from __future__ import annotations

import time

import torch

from artlab.explain import channel, random_transforms, visualize
from artlab.models import best_backbone, model_device


def _plain_loop(model, objective, layer: str, size: int, steps: int, seed: int = 0) -> torch.Tensor:
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.01 * torch.randn(1, 3, size, size, generator=generator)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        value = objective(model(x, [layer]))
        (-value).backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach().cpu()


def _scores(model, objective, layer: str, image: torch.Tensor, draws: int = 16) -> tuple[float, float]:
    device = model_device(model)
    image = image.to(device)
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        plain = float(objective(model(image, [layer])))
        robust = sum(float(objective(model(random_transforms(image, generator=generator), [layer])))
                     for _ in range(draws)) / draws
    return plain, robust


def run(quick: bool) -> list[dict]:
    model = best_backbone()
    layers = list(model.spec.inspect_layers) or model.layer_names
    layer = layers[len(layers) // 2]
    index = 5
    objective = channel(layer, index)
    size, steps = (96, 48) if quick else (128, 256)

    t0 = time.perf_counter()
    vis = visualize(model, objective, size=size, steps=steps, preview_every=0).run()
    artlab_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain_image = _plain_loop(model, objective, layer, size, steps)
    plain_s = time.perf_counter() - t0

    a_value, a_robust = _scores(model, objective, layer, vis.image)
    p_value, p_robust = _scores(model, objective, layer, plain_image)
    grey = torch.full((1, 3, size, size), 0.5)
    g_value, _ = _scores(model, objective, layer, grey, draws=1)
    return [{
        "case": f"{model.name} {layer}[{index}], {steps} steps @{size}px",
        "artlab_s": artlab_s, "plain_s": plain_s, "artlab/plain": artlab_s / plain_s,
        "grey_value": g_value,
        "artlab_value": a_value, "plain_value": p_value,
        "artlab_value_transformed": a_robust, "plain_value_transformed": p_robust,
    }]
