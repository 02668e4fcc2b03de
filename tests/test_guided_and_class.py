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
from luciddream.labels import find_class
from luciddream.nets import load_model

import quality
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
    """Short class dreams (the object look, methods/lucid.py: 30 optimiser steps) must raise the class for
    the judge on a σ=2 blurred view, not only on the exact pixels. Adversarial texture scores on the plain view and
    collapses when blurred (blur ≪ plain); a dream that does nothing leaves the blurred score where the photo had it
    (≤ 0.0001 here). Measured: goldfish blur 0.96 / plain 0.98; the old tiled logit ascent reached 0.16 / 0.13 with
    more steps, single-octave ascent ≤ 0.003 blurred. A hybrid must put both classes in the judge's top 5 (measured:
    goldfish rank 1, tree frog rank 3; ostrich + jellyfish misses at this length, ostrich rank 153)."""
    image = fixture_image("chelsea", (224, 150))
    box = (slice(20, 130), slice(30, 194))
    mask = np.zeros(image.shape[:2], np.float32)
    mask[box] = 1.0
    judge = load_model("lite2", "cpu")
    out = luciddream.dream(image, mask, "goldfish", octaves=2, steps=15, seed=1, look="object")
    index = find_class("goldfish")
    before = quality.judge_class(judge, image[box], index)
    after = quality.judge_class(judge, out[box], index)
    assert after["blur"] > 0.3 and after["blur"] > 100 * before["blur"], (before, after)
    assert after["blur"] >= 0.5 * after["plain"] and after["rank_robust"] == 0, after
    assert np.array_equal(out[mask == 0], image[mask == 0])

    hybrid = luciddream.dream(image, mask, "goldfish=1, tree frog=1", octaves=2, steps=15, seed=1, look="object")
    for name in ("goldfish", "tree frog"):
        index = find_class(name)
        before = quality.judge_class(judge, image[box], index)
        after = quality.judge_class(judge, hybrid[box], index)
        assert after["rank_robust"] < 5 and after["blur"] > 10 * before["blur"], (name, before, after)
