"""`luciddream serve` answers the "looks" message (the look atlas's pictures) at POST /v1/dream like a dream, so a
plug-in that reaches a remote engine can browse the looks too; a dream sent while a looks job runs goes first."""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from luciddream import protocol as P
from luciddream.protocol.looks import read
from test_server_limits import Serve


@pytest.fixture()
def server(tmp_path):
    env = {**os.environ, "LUCIDDREAM_CACHE": str(tmp_path / "cache"), "LUCIDDREAM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    started = Serve(tmp_path, env=env)
    yield started
    started.close()


def logged(server, line: str, within_s: float = 10.0) -> bool:
    """Whether serve's log says `line` within `within_s`: serve writes a job's log line just after its reply, so a
    client that has the reply may read the log a moment before the line is there."""
    deadline = time.monotonic() + within_s
    while line not in server.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_serve_answers_looks_and_a_dream_pre_empts_them(server, tmp_path):
    client = P.Client.connect(server.url)
    model, pages = read(client.looks(layers=["block1:0"]), timeout=300)
    assert model == "lite0" and [look.target for look in pages[0]] == ["layer:block1", "layer:block1:0"]
    with Image.open(io.BytesIO(pages[0][1].png)) as im:
        assert im.size[0] >= 64
    assert pages[0][1].classes and pages[0][1].label.startswith("block1 channel 0: ")
    assert logged(server, "looks on cpu: done")
    with pytest.raises(P.WorkerError, match=r'Unknown layer "block77" for lite0') as info:
        read(client.looks(layers=["block77"]), timeout=60)
    assert info.value.code == P.BAD_INPUT

    looks = client.looks(layers=["block2"], channels=24)   # three batches of channels: still busy when the dream
    for event in looks.events(timeout=300):                # arrives over its own HTTP request
        if "channels" in (event.message or ""):   # its thumbnail is drawn, its channels are being optimised
            break
    picture = np.full((48, 48, 3), 128, np.uint8)
    dream = client.dream(picture.tobytes(), 48, 48, 3, "u8", None, "layer:block1", {"octaves": 1, "steps": 2,
                                                                                    "seed": 1, "device": "cpu"})
    assert len(dream.result(timeout=300)) == picture.size
    with pytest.raises(P.WorkerError, match=r"The looks were paused so that dream .* could run") as info:
        read(looks, timeout=60)
    assert info.value.code == P.BUSY
    assert any(p.name == "block2.png" for p in (tmp_path / "cache").glob("atlas/*/*.png"))
    _, pages = read(client.looks(layers=["block2:0,1"]), timeout=300)
    assert [look.target for look in pages[0]] == ["layer:block2", "layer:block2:0", "layer:block2:1"]
    assert logged(server, "looks on cpu: paused")
