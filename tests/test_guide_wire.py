"""A guide picture travels with a dream (the "guide" field and its pixels after the mask), so both plug-ins can
use any layer of the open image, or a file, as the guide; and the hello names the device "Test engine" shows.

A real worker process through the protocol package, as the plug-ins drive it; tiny jobs on one thread.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from luciddream import protocol as P

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
W, H = 64, 48
FAST = {"steps": 3, "octaves": 1, "tile": 128, "seed": 3, "step_size": 8.0}


@pytest.fixture(scope="module")
def client():
    c = P.Client.spawn(sys.executable, env=ENV)
    yield c
    c.close()


def picture(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_a_guide_of_any_size_changes_the_dream(client) -> None:
    img = picture(0)
    plain = np.frombuffer(client.dream(img.tobytes(), W, H, 3, "u8", None, "layer:block6", FAST).result(60),
                          np.uint8)
    stripes = np.zeros((40, 90, 3), np.uint8)
    stripes[:, ::6] = (255, 40, 0)
    guided = client.dream(img.tobytes(), W, H, 3, "u8", None, "layer:block6", FAST,
                          guide=(stripes.tobytes(), 90, 40, 3, "u8")).result(60)
    guided = np.frombuffer(guided, np.uint8)
    assert guided.shape == plain.shape
    assert np.abs(guided.astype(int) - plain.astype(int)).mean() > 0.5   # the guide pulled the dream elsewhere
    again = client.dream(img.tobytes(), W, H, 3, "u8", None, "layer:block6", FAST,
                         guide=(stripes.tobytes(), 90, 40, 3, "u8")).result(60)
    assert np.array_equal(np.frombuffer(again, np.uint8), guided)      # same seed, same guide: same pixels


def test_a_guide_with_a_mask_and_alone_without_targets(client) -> None:
    img = picture(1)
    mask = np.zeros((H, W), np.uint8)
    mask[8:40, 8:56] = 255
    gray_guide = (np.random.default_rng(5).random((30, 30, 1)) * 65535).astype(np.uint16)
    out = client.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), None, FAST,
                       guide=(gray_guide.tobytes(), 30, 30, 1, "u16")).result(60)
    out = np.frombuffer(out, np.uint8).reshape(H, W, 3)
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert (out[mask == 255] != img[mask == 255]).any()


def test_a_wrong_guide_is_one_sentence(client) -> None:
    img = picture(2)
    with pytest.raises(P.WorkerError) as info:
        client.dream(img.tobytes(), W, H, 3, "u8", None, None, FAST, guide=(b"\0" * 10, 8, 8, 3, "u8"))
    assert "guide" in info.value.message and "192 bytes" in info.value.message
    with pytest.raises(P.WorkerError) as info:
        client.dream(img.tobytes(), W, H, 3, "u8", None, None, FAST, guide=(b"\0" * 10, 5, 2, 1, "u12"))
    assert "sample" in info.value.message and "\n" not in info.value.message


def test_the_hello_names_the_device(client) -> None:
    device = client.hello().get("device", "")
    assert device == "cpu" or device.startswith(("cuda", "mps")), device
