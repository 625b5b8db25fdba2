"""Colour control for style transfer (Gatys et al. 2017, "Controlling perceptual factors").

Two ways to keep the content's colours: transfer luminance only (:func:`rgb_to_yiq`,
:func:`match_luminance`: the optimiser sees grey images, the content's chroma is put
back afterwards), or recolour the style like the content before the transfer
(:func:`match_color`, a linear colour transfer).
"""

from __future__ import annotations

import torch
from torch import Tensor

from artlab.images import ensure_image_batch

__all__ = ["rgb_to_yiq", "yiq_to_rgb", "match_luminance", "match_color"]


# YIQ (NTSC): Y is luminance, I and Q carry the chroma. Gatys et al. 2017 use YIQ for luminance-only transfer.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ.double()).float()


def rgb_to_yiq(images: Tensor) -> Tensor:
    """N×3×H×W RGB in [0, 1] -> YIQ (Y in [0, 1]; I, Q signed chroma)."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(images.device, images.dtype), images)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    """N×3×H×W YIQ -> RGB (not clamped: out-of-gamut colours fall outside [0, 1])."""
    return torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(yiq.device, yiq.dtype), yiq)


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style's luminance (N×1×H×W), shifted and scaled to the content's luminance mean and std.

    Gatys et al. 2017 do this before luminance-only transfer, so the style's brightness
    and contrast do not overwrite the content's.
    """
    ys, yc = rgb_to_yiq(style)[:, :1], rgb_to_yiq(content)[:, :1]
    std_s = ys.std().clamp_min(1e-6)  # a flat style: keep it flat
    return ((ys - ys.mean()) * (yc.std() / std_s) + yc.mean()).clamp(0.0, 1.0)


def _sqrtm(cov: Tensor, power: float) -> Tensor:
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(1e-5) ** power) @ vectors.T


def match_color(style: Tensor, content: Tensor) -> Tensor:
    """The style recoloured so its RGB mean and covariance are the content's (1×3×H×W in [0, 1]).

    The linear colour transfer of Gatys et al. 2017 ("colour histogram matching",
    after Hertzmann's Image Analogies), with symmetric matrix square roots:
    x' = Σ_c^½ Σ_s^−½ (x − μ_s) + μ_c. A grayscale style (rank-one covariance) is
    regularised (eigenvalues floored at 1e-5) and simply takes the content's palette
    along its luminance axis.
    """
    s = ensure_image_batch(style, "style").double()
    c = ensure_image_batch(content, "content").double()
    fs, fc = s.flatten(2)[0], c.flatten(2)[0]  # 3 × pixels
    mu_s, mu_c = fs.mean(1, keepdim=True), fc.mean(1, keepdim=True)
    cov_s = torch.cov(fs) + 1e-6 * torch.eye(3, dtype=fs.dtype, device=fs.device)
    cov_c = torch.cov(fc) + 1e-6 * torch.eye(3, dtype=fc.dtype, device=fc.device)
    a = _sqrtm(cov_c, 0.5) @ _sqrtm(cov_s, -0.5)
    out = (a @ (fs - mu_s) + mu_c).reshape(s.shape)
    return out.clamp(0.0, 1.0).to(style.dtype if style.is_floating_point() else torch.float32)
