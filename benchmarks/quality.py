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


def gray_view(x: torch.Tensor) -> torch.Tensor:
    """The image in grayscale (ITU-R 601 luma in all three channels): a class must read by its shapes, not only by
    its colours."""
    y = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return y.expand(-1, 3, -1, -1)


def instance_windows(height: int, width: int, instance: int) -> list[tuple[slice, slice]]:
    """Square windows of one instance's side over a (height, width) region, half a side apart (one window, the
    whole region, when the region is smaller than an instance)."""
    side = min(instance, height, width)
    ys = sorted({round(v) for v in np.linspace(0, height - side, max(1, round(2 * (height - side) / side) + 1))})
    xs = sorted({round(v) for v in np.linspace(0, width - side, max(1, round(2 * (width - side) / side) + 1))})
    return [(slice(y, y + side), slice(x, x + side)) for y in ys for x in xs]


def window_probabilities(judge: torch.nn.Module, rgb: np.ndarray, instance: int) -> np.ndarray:
    """(windows, classes): the judge's probabilities on every instance-sized window of the (h, w, 3) region
    (`instance_windows`), each the mean over four views and grayscale (a class must read by shape, not only by
    colour)."""
    s = judge.spec.input_size
    x = torch.from_numpy(np.ascontiguousarray(_as_float_rgb(rgb))).permute(2, 0, 1)[None]
    rows = []
    for ys, xs in instance_windows(x.shape[2], x.shape[3], instance):
        crop = F.interpolate(x[:, :, ys, xs], size=(s, s), mode="bilinear", antialias=True,
                             align_corners=False).clamp(0, 1)
        seen = {k: v for k, v in views(crop).items() if k != "plain"}
        seen["gray"] = gray_view(crop)
        with torch.no_grad():
            rows.append(torch.stack([judge(v, [LOGITS])[LOGITS].softmax(1)[0] for v in seen.values()]).mean(0))
    return torch.stack(rows).numpy()


def instance_scores(judge: torch.nn.Module, rgb: np.ndarray, index: int, instance: int) -> dict[str, float]:
    """Recognisability at the instance scale (`window_probabilities`): a window "has" the class when it is in the
    top 5 there. Returns "top5" (share of windows that have it), "median" (median of the windows' probability) and
    "windows"."""
    probs = window_probabilities(judge, rgb, instance)
    hits = (probs > probs[:, index:index + 1]).sum(axis=1) < 5
    return {"top5": float(hits.mean()), "median": float(np.median(probs[:, index])), "windows": float(len(probs))}


def layout_similarity(before: np.ndarray, after: np.ndarray, side: int = 32) -> float:
    """How much of the photo's low-resolution structure survives: SSIM (Gaussian windows σ=1.5, the usual
    constants, mean over the RGB channels) of the two regions shrunk so the longer side is `side` pixels.

    At 32 px a person still reads the layout (where the head, the eyes, the cup are) and the colour regions, while
    the instances a class dream adds are mostly below that resolution; SSIM compares local means, contrasts and
    correlations, so it drops when the layout is painted over, not when texture is added. 1 = the same picture."""
    def small(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(_as_float_rgb(a))).permute(2, 0, 1)[None].double()
        k = side / max(x.shape[2], x.shape[3])
        size = (max(8, round(x.shape[2] * k)), max(8, round(x.shape[3] * k)))
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    a, b = small(before), small(after)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = gaussian_blur(a, 1.5), gaussian_blur(b, 1.5)
    var_a = gaussian_blur(a * a, 1.5) - mu_a ** 2
    var_b = gaussian_blur(b * b, 1.5) - mu_b ** 2
    cov = gaussian_blur(a * b, 1.5) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim.mean())


def laplacian_variance(rgb: np.ndarray) -> float:
    """Sharpness: the variance of the 4-neighbour Laplacian of the gray image (in 0–1 units)."""
    g = _as_float(rgb)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def mesh_share(before: np.ndarray, after: np.ndarray) -> float:
    """How much of the change a dream made lies in a fine regular mesh: the share of the gray change's power above a
    quarter cycle a pixel. Sharpness alone rewards that mesh (the grow look's octaves once laid one over large
    instances, 164× the photo's Laplacian variance, seen only at 1:1); detail a network draws on a window that
    shows it a whole instance is coarser than that."""
    change = _as_float(after) - _as_float(before)
    power = np.abs(np.fft.fft2(change - change.mean())) ** 2
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(change.shape[0]), np.fft.fftfreq(change.shape[1]),
                                      indexing="ij"))
    return float(power[frequency > 0.25].sum() / max(float(power.sum()), 1e-12))


def gray_rgb(rgb: np.ndarray) -> np.ndarray:
    """An (h, w, 3) uint8 picture in grayscale (601 luma in all channels), for judging a class by shape alone."""
    y = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(np.round(y), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
