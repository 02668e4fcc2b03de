"""Numbers that judge a dream, for the tests and benchmarks: the seam score and the robust class judge.

Seams: a seam is a line where the change the dream made jumps, so look at the change D = output − input, average
|∂D/∂x| down each column and |∂D/∂y| along each row, and compare the worst line (99.5th percentile) with a typical
one (median). A seamless dream scores close to a dream done in one piece.

Classes: a network fooled by adversarial texture is fooled only at the exact pixels it was optimised for: blur it,
halve its resolution, turn it or crop it and the texture stops reading as the class, while a real object survives.
So a class dream is judged by *another* network (never the dreamer) on views the dream was not optimised for.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from luciddream import transforms
from luciddream.filters import gaussian_blur
from luciddream.nets import LOGITS

VIEWS = ("blur", "half", "rotate", "crop")


def _as_float(a: np.ndarray) -> np.ndarray:
    """Gray values in the [0, 1] scale (the mean of the channels of a colour image)."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    a = a.astype(np.float64) / scale
    return a if a.ndim == 2 else a.mean(axis=2)


def seam_score(before: np.ndarray, after: np.ndarray) -> float:
    """max over both axes of (99.5th percentile / median) of the per-line mean gradient of the change."""
    d = _as_float(after) - _as_float(before)
    cols = np.abs(np.diff(d, axis=1)).mean(axis=0)
    rows = np.abs(np.diff(d, axis=0)).mean(axis=1)
    return float(max(np.percentile(p, 99.5) / max(np.median(p), 1e-12) for p in (cols, rows)))


def views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The (1, 3, S, S) image as the judge sees it: plain, and under the four views a dream is not optimised for:
    Gaussian blur σ=2, 2× down- then up-sampling, rotation by 20° (border pixels repeat into the corners) and a
    central 70% crop scaled back up."""
    return {
        "plain": x,
        "blur": gaussian_blur(x, 2.0),
        "half": transforms.down_up(x, 2.0),
        "rotate": transforms.rotate(x, 20.0),
        "crop": transforms.central_crop(x, 0.15),
    }


def judge_class(judge: torch.nn.Module, rgb: np.ndarray, index: int) -> dict[str, float]:
    """Probability of class `index` for an (h, w, 3) RGB crop under each view, plus "robust" (their mean) and
    "rank_robust" (how many classes beat it on the mean probabilities over the views; < 5 means top 5)."""
    s = judge.spec.input_size
    x = torch.from_numpy(np.ascontiguousarray(_as_float_rgb(rgb))).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        probs = {k: judge(v, [LOGITS])[LOGITS].softmax(1)[0] for k, v in views(x).items()}
    out = {k: float(p[index]) for k, p in probs.items()}
    out["robust"] = sum(out[k] for k in VIEWS) / len(VIEWS)
    mean = torch.stack([probs[k] for k in VIEWS]).mean(0)
    out["rank_robust"] = int((mean > mean[index]).sum())
    return out


def _as_float_rgb(a: np.ndarray) -> np.ndarray:
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    return (a[..., :3].astype(np.float32) / scale)
