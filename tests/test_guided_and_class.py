"""Guide images pull the dream toward the guide's features; class dreams stay real features, not adversarial texture.

Real Lite0 dreams on the shared photos; EfficientNet-Lite2 (never the dreamer) judges the class on a blurred view,
where adversarial texture (a pixel-exact pattern that fools the network) no longer reads as the class.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import luciddream
from luciddream import quality
from luciddream.labels import find_class
from luciddream.models import load_model

from conftest import fixture_image


def _pooled(net, rgb: np.ndarray, layer: str) -> torch.Tensor:
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net(x, [layer])[layer].mean(dim=(2, 3))[0]


def test_a_guided_dream_moves_toward_the_guide_more_than_an_unguided_one():
    image, guide = fixture_image("chelsea", (192, 128)), fixture_image("coffee", (192, 128))
    net = load_model("lite0", "cpu")
    target = _pooled(net, guide, net.spec.default_layer)

    def similarity(a: np.ndarray) -> float:
        return float(torch.nn.functional.cosine_similarity(_pooled(net, a, net.spec.default_layer), target, dim=0))

    settings = dict(octaves=2, steps=6, seed=1)
    guided = luciddream.dream(image, None, guide=guide, **settings)
    unguided = luciddream.dream(image, None, **settings)
    start = similarity(image)
    gained, drifted = similarity(guided) - start, similarity(unguided) - start
    assert gained > 0.05 and gained > drifted + 0.05, (start, gained, drifted)


def test_guide_flag_and_bad_guide(tmp_path):
    image = fixture_image("chelsea", (96, 64))
    src, guide, out = tmp_path / "in.png", tmp_path / "guide.png", tmp_path / "out.png"
    Image.fromarray(image).save(src)
    Image.fromarray(fixture_image("coffee", (80, 80))).save(guide)
    r = subprocess.run([sys.executable, "-m", "luciddream", "dream", str(src), "-o", str(out), "--guide", str(guide),
                        "--octaves", "1", "--steps", "2", "--seed", "1", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (np.asarray(Image.open(out)) != image).any()
    with pytest.raises(luciddream.DreamError):
        luciddream.dream(image, None, guide="coffee.png", steps=1, octaves=1)


def test_class_dreams_survive_blur_so_they_are_not_adversarial_texture():
    """Short default class dreams must raise the class for the judge on a σ=2 blurred view, not only on the exact
    pixels. Adversarial texture scores on the plain view and collapses when blurred (blur ≪ plain); a dream that
    does nothing leaves the blurred score where the photo had it. Measured here: goldfish blur 0.16 / plain 0.13,
    ostrich 0.036 / 0.091; single-octave ascent (the regression) left both blurred scores at ≤0.003."""
    image = fixture_image("chelsea", (224, 150))
    box = (slice(20, 130), slice(30, 194))
    mask = np.zeros(image.shape[:2], np.float32)
    mask[box] = 1.0
    judge = load_model("lite2", "cpu")
    blurred = []
    for name in ("goldfish", "ostrich"):
        out = luciddream.dream(image, mask, name, octaves=3, steps=6, seed=1)
        index = find_class(name)
        before = quality.judge_class(judge, image[box], index)
        after = quality.judge_class(judge, out[box], index)
        assert after["blur"] > 10 * before["blur"] and after["blur"] >= 0.25 * after["plain"], (name, before, after)
        blurred.append(after["blur"])
    assert np.mean(blurred) > 0.05, blurred
