"""Numbers that judge a dream: the seam score (are tile borders visible?).

A seam is a line where the change the dream made jumps: so look at the change D = output − input, average
|∂D/∂x| down each column and |∂D/∂y| along each row, and compare the worst line (99.5th percentile) with a typical
one (median). A seamless dream scores close to a dream done in one piece.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where used: the seam score needs only NumPy
    import torch


def _as_float(a: np.ndarray) -> np.ndarray:
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    a = a.astype(np.float64) / scale
    return a if a.ndim == 2 else a.mean(axis=2)


def seam_score(before: np.ndarray, after: np.ndarray) -> float:
    """max over both axes of (99.5th percentile / median) of the per-line mean gradient of the change."""
    d = _as_float(after) - _as_float(before)
    cols = np.abs(np.diff(d, axis=1)).mean(axis=0)
    rows = np.abs(np.diff(d, axis=0)).mean(axis=1)
    return float(max(np.percentile(p, 99.5) / max(np.median(p), 1e-12) for p in (cols, rows)))


# ---------------------------------------------------------------------------------------------------------------
# Robust class judge.
#
# A network fooled by adversarial texture is fooled only at the exact pixels it was optimised for: blur it, halve
# its resolution, turn it or crop it and the texture stops reading as the class, while a real object survives. So
# a class dream is judged by *another* network (never the dreamer) on views the dream was not optimised for.

VIEWS = ("blur", "half", "rotate", "crop")


def views(x: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    """The (1, 3, S, S) image as the judge sees it: plain, and under the four views a dream is not optimised for:
    Gaussian blur σ=2, 2× down- then up-sampling, rotation by 20° (border pixels repeat into the corners) and a
    central 70% crop scaled back up."""
    import math

    import torch
    import torch.nn.functional as F

    from .filters import gaussian_blur

    s = x.shape[-1]
    a = math.radians(20.0)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]], dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    c0 = round(s * 0.15)
    crop = x[:, :, c0:s - c0, c0:s - c0]
    return {
        "plain": x,
        "blur": gaussian_blur(x, 2.0),
        "half": F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True,
                                            align_corners=False), size=(s, s), mode="bilinear", align_corners=False),
        "rotate": F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False),
        "crop": F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False),
    }


def judge_class(judge: "torch.nn.Module", rgb: np.ndarray, index: int) -> dict[str, float]:
    """Probability of class `index` for an (h, w, 3) RGB crop under each view, plus "robust" (their mean) and
    "rank_robust" (how many classes beat it on the mean probabilities over the views; < 5 means top 5)."""
    import torch
    import torch.nn.functional as F

    s = judge.spec.input_size
    x = torch.from_numpy(np.ascontiguousarray(_as_float_rgb(rgb))).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    vs = views(x)
    with torch.no_grad():
        probs = {k: judge(v, ["logits"])["logits"].softmax(1)[0] for k, v in vs.items()}
    out = {k: float(p[index]) for k, p in probs.items()}
    out["robust"] = sum(out[k] for k in VIEWS) / len(VIEWS)
    mean = torch.stack([probs[k] for k in VIEWS]).mean(0)
    out["rank_robust"] = int((mean > mean[index]).sum())
    return out


def _as_float_rgb(a: np.ndarray) -> np.ndarray:
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    return (a[..., :3].astype(np.float32) / scale)
