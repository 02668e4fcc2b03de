"""A picture as a Fourier spectrum in decorrelated colour: the parameterisation of the class method (as in Lucid).

Optimising free pixels finds high-frequency patterns the network reacts to; optimising the coefficients of a
spectrum scaled like natural images' (falling as 1/f^decay) gives every frequency an equal say, so large smooth
shapes are as easy to make as speckle. Colours are mixed through the square root of ImageNet's colour covariance,
so a unit step moves colours along directions natural images vary in, not into rainbow noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

# Square root of ImageNet's colour covariance (the constant Lucid publishes), its columns scaled so the longest
# has unit length.
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()


@dataclass(frozen=True, eq=False)
class Spectrum:
    """The optimised coefficients of an (h, w) three-channel picture and the fixed grids they are read with."""

    coefficients: torch.Tensor  # (3, h, w // 2 + 1, 2): real and imaginary parts of rfft2's layout; the parameter
    frequencies: torch.Tensor   # (h, w // 2 + 1): radial frequency of each coefficient, cycles per pixel
    scale: torch.Tensor         # 1/f^decay, normalised to unit mean square
    color: torch.Tensor         # COLOR_CORRELATION on the coefficients' device
    size: tuple[int, int]

    def lowpass(self, cut: float, softness: float = 0.15) -> torch.Tensor:
        """A gain that passes frequencies below `cut` (cycles per pixel) and fades out over `softness` × cut."""
        return torch.sigmoid((cut - self.frequencies) / (softness * cut))

    def picture(self, gain: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The (1, 3, h, w) picture the coefficients stand for, each frequency times `gain` when given."""
        weight = self.scale if gain is None else self.scale * gain
        channels = torch.fft.irfft2(torch.view_as_complex(self.coefficients) * weight, s=self.size, norm="ortho")
        return decorrelated(channels, self.color)


def frequencies(size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Radial frequency (cycles per pixel) of every coefficient of an rfft2 of that size."""
    fy = torch.fft.fftfreq(size[0], device=device)[:, None]
    fx = torch.fft.rfftfreq(size[1], device=device)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


def spectrum(size: tuple[int, int], decay: float, generator: torch.Generator, std: float = 0.01,
             device: torch.device | str = "cpu") -> Spectrum:
    """Small random coefficients (drawn on the CPU from `generator`, so a seed means the same on every device),
    scaled as 1/f^decay with the lowest frequency standing in for the constant term."""
    freq = frequencies(size, device)
    scale = 1.0 / freq.clamp(min=1.0 / max(size)) ** decay
    scale = scale / scale.pow(2).mean().sqrt()
    coefficients = (torch.randn(3, size[0], size[1] // 2 + 1, 2, generator=generator) * std).to(device)
    return Spectrum(coefficients.requires_grad_(True), freq, scale, COLOR_CORRELATION.to(device), size)


def decorrelated(channels: torch.Tensor, color: torch.Tensor = COLOR_CORRELATION) -> torch.Tensor:
    """(3, h, w) decorrelated channels mixed into (1, 3, h, w) RGB directions."""
    return torch.einsum("ij,jhw->ihw", color, channels)[None]
