"""The image a feature visualisation optimises: Fourier-parameterised, colour-decorrelated pixels, and the
random transforms applied to it at every step.

Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017) show that gradient ascent on raw
pixels finds high-frequency patterns that excite a unit without looking like anything (an adversarial
pattern). Two changes make the optimum look natural, and this module implements both:

* **A preconditioned parameterisation** (:class:`FourierImage`). The optimiser moves the 2-D Fourier
  coefficients of the image, each frequency scaled by 1/f^decay, so a step changes low frequencies as
  easily as high ones (in pixel space, gradient steps are dominated by high frequencies). The three
  channels are decorrelated colours: the image is ``sigmoid(C · y)`` with C the square root of ImageNet's
  colour correlation matrix, so the optimiser moves along independent colour directions.
* **Transformation robustness** (:func:`random_transforms`). The image is padded, jittered, scaled,
  rotated and jittered again before each forward pass, so only patterns that excite the unit wherever and
  however large they appear survive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["COLOR_CORRELATION_SVD_SQRT", "FourierImage", "random_transforms", "decorrelated_to_rgb"]

#: The square root (via SVD) of ImageNet's 3×3 RGB colour correlation matrix: the values Lucid uses
#: (lucid.optvis.param.color.color_correlation_svd_sqrt). Rows are RGB output channels, columns the three
#: decorrelated components. Below it is divided by its largest column norm, as Lucid does, so one unit in
#: any decorrelated component moves an RGB value by at most one unit.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])
_COLOR = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


def decorrelated_to_rgb(t: Tensor) -> Tensor:
    """N×3×H×W in decorrelated colour space (unbounded) -> RGB in [0, 1]: ``sigmoid(C · t)`` per pixel."""
    rgb = torch.einsum("ij,njhw->nihw", _COLOR.to(t.device, t.dtype), t)
    return torch.sigmoid(rgb)


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, bool):
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in size)):
        raise ValueError(f"size must be an int >= 8 or a (height, width) pair of them, got {size!r}")
    return int(size[0]), int(size[1])


class FourierImage(nn.Module):
    """A batch of images parameterised by scaled Fourier coefficients in decorrelated colour space.

    ``forward()`` returns N×3×H×W in [0, 1]. The parameter ``spectrum`` (N×3×H×(W//2+1)×2, real and
    imaginary parts) starts as seeded Gaussian noise of standard deviation 0.01, as in Lucid; each
    frequency f (cycles per image side) is multiplied by 1 / max(f, 1/max(H, W))^decay before the inverse
    real FFT, so the optimiser sees a whitened (roughly 1/f-spectrum) image space. ``decay=1`` is Lucid's
    default. The pixels are ``sigmoid(C · irfft2(scaled spectrum) / 4)``: C the colour decorrelation
    matrix (:data:`COLOR_CORRELATION_SVD_SQRT`) and 4 Lucid's empirical constant that keeps the first
    images near mid-grey.
    """

    def __init__(self, size: int | tuple[int, int], *, batch: int = 1, decay: float = 1.0, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        h, w = _size_pair(size)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        if not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be a finite number >= 0, got {decay!r}")
        self.size = (h, w)
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** float(decay)
        self.register_buffer("scale", scale[None, None, :, :, None].to(torch.float32), persistent=False)
        generator = torch.Generator().manual_seed(int(seed))
        spectrum = 0.01 * torch.randn(batch, 3, h, w // 2 + 1, 2, generator=generator)
        self.spectrum = nn.Parameter(spectrum.to(device) if device is not None else spectrum)
        self.scale = self.scale.to(self.spectrum.device)

    def decorrelated(self) -> Tensor:
        """The image in decorrelated colour space before the sigmoid (N×3×H×W, unbounded)."""
        h, w = self.size
        coefficients = torch.view_as_complex((self.spectrum * self.scale).contiguous())
        # an orthonormal inverse FFT (as Lucent's torch.irfft(..., normalized=True)), then Lucid's /4
        image = torch.fft.irfft2(coefficients, s=(h, w), norm="ortho")
        return image / 4.0

    def forward(self) -> Tensor:
        """The images, N×3×H×W in [0, 1]."""
        return decorrelated_to_rgb(self.decorrelated())


def random_transforms(
    images: Tensor,
    *,
    jitter: int = 8,
    scales: Sequence[float] = (1.0, 0.975, 1.025, 0.95, 1.05),
    angles: Sequence[float] = tuple(range(-5, 6)),
    generator: torch.Generator | None = None,
    pad: int = 12,
) -> Tensor:
    """Lucid's standard transforms: pad, jitter, scale, rotate, jitter again (one draw per call).

    ``images`` N×3×H×W (differentiable; the transform is applied to the whole batch). Steps, as Lucid's
    ``transform.standard_transforms``: pad by ``pad`` px with mid-grey (0.5), crop a random offset of up to
    ``jitter`` px, resize by a factor drawn from ``scales``, rotate by an angle (degrees) drawn from
    ``angles``, and crop up to ``jitter // 2`` px again. The output size varies with the scale (the network
    accepts any size). Draws come from ``generator`` (a CPU ``torch.Generator``; seed it for
    reproducibility). Departure from Lucid: its rotation fills the corners with zeros (black); here they are
    filled by repeating the border, which does not invent dark corners for the network to react to.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    def pick(options: Sequence[float]) -> float:
        return float(options[int(torch.randint(len(options), (1,), generator=generator))])

    def crop(x: Tensor, amount: int) -> Tensor:
        if amount <= 0:
            return x
        dy, dx = (int(v) for v in torch.randint(0, amount + 1, (2,), generator=generator))
        h, w = x.shape[-2:]
        return x[..., dy:h - amount + dy, dx:w - amount + dx]

    x = F.pad(images, (pad, pad, pad, pad), mode="constant", value=0.5) if pad > 0 else images
    x = crop(x, int(jitter))
    s = pick(scales) if scales else 1.0
    if s != 1.0:
        h, w = x.shape[-2:]
        x = F.interpolate(x, size=(max(8, round(h * s)), max(8, round(w * s))), mode="bilinear",
                          align_corners=False)
    angle = pick(angles) if angles else 0.0
    if angle != 0.0:
        theta = math.radians(angle)
        c, s_ = math.cos(theta), math.sin(theta)
        h, w = x.shape[-2:]
        # affine_grid works in normalised coordinates; the aspect ratio keeps the rotation rigid
        matrix = torch.tensor([[c, -s_ * h / w, 0.0], [s_ * w / h, c, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crop(x, int(jitter) // 2)
