"""A bounded soak of `luciddream serve` on loopback: it starts its own server, runs the issue's checks, prints the
figures and stops by itself (exit status 1 if a check failed).

1. N small jobs (default 500) from 8 concurrent clients: every one answered, none lost or duplicated (each result
   carries its own input's unselected pixels back, so a result that went to the wrong job shows), and the server's
   RSS after the run within 10 % of its RSS after the first 50.
2. 200 idle connections held open: a new client's job is still served.
3. Clients that send their headers a byte at a time, and one that sends its body a byte at a time: dropped within
   the stated --header-timeout and --body-timeout.
4. A client that hangs up mid-job: the job is cancelled (the runner's log line) within a second.

    .venv/bin/python benchmarks/soak.py [--jobs 500] [--clients 8] [--minutes 15]

Timings depend on the machine's load: say what else ran beside it when quoting them.
"""
from __future__ import annotations

import argparse
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "engine"))
from luciddream import protocol as P  # noqa: E402

W, H = 48, 32
TINY = {"steps": 1, "octaves": 1, "tile": 64}
SLOW = {"steps": 1000, "octaves": 1, "tile": 64, "seed": 1}
HEADER_S, BODY_S = 3.0, 5.0
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


class Server:
    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "luciddream", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, env=ENV)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"serve did not start: {log_path.read_text()[-2000:]}")
        self.start_line = line.strip()
        self.url = line.split("listening on ")[1].split()[0]
        host, port = self.url.split("//")[1].strip("/").rsplit(":", 1)
        self.address = (host, int(port))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, words: str, timeout: float) -> float | None:
        """Seconds until `words` appear in the log (None: not within timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if words in self.log():
                return time.monotonic() - start
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


def job_image(number: int) -> tuple[np.ndarray, np.ndarray]:
    img = (np.random.default_rng(number).random((H, W, 3)) * 255).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[8:24, 12:36] = 255
    return img, mask


def many_jobs(server: Server, jobs: int, clients: int, deadline: float) -> dict:
    """`jobs` jobs from `clients` threads; returns the counts and the RSS after the first 50 and at the end."""
    todo: queue.Queue = queue.Queue()
    for n in range(jobs):
        todo.put(n)
    answered: dict[int, str] = {}
    problems: list[str] = []
    lock = threading.Lock()
    rss_after_50: list[float] = []
    busy_retries = [0]

    def client() -> None:
        connection = P.Client.connect(server.url, timeout=120)
        while time.monotonic() < deadline:
            try:
                n = todo.get_nowait()
            except queue.Empty:
                return
            img, mask = job_image(n)
            while True:
                try:
                    job = connection.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), "layer:block3",
                                           {**TINY, "seed": n})
                    out = np.frombuffer(job.result(timeout=300), np.uint8).reshape(img.shape)
                    break
                except P.WorkerError as exc:
                    if exc.code == P.BUSY:   # more clients than queue slots: told so, try again
                        with lock:
                            busy_retries[0] += 1
                        time.sleep(0.05)
                        continue
                    with lock:
                        problems.append(f"job {n}: {exc.code}: {exc.message}")
                    out = None
                    break
            with lock:
                if out is not None:
                    if n in answered:
                        problems.append(f"job {n} answered twice")
                    elif not np.array_equal(out[mask == 0], img[mask == 0]):
                        problems.append(f"job {n} got pixels that are not its own")
                    else:
                        answered[n] = "ok"
                if len(answered) == 50 and not rss_after_50:
                    rss_after_50.append(server.rss_mb())

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    return {"answered": len(answered), "problems": problems, "seconds": seconds, "busy_retries": busy_retries[0],
            "rss_50": rss_after_50[0] if rss_after_50 else float("nan"), "rss_end": server.rss_mb()}


def idle_connections(server: Server, count: int) -> tuple[float, bool]:
    """Hold `count` idle connections, then time a new client's job."""
    idle = [socket.create_connection(server.address, timeout=30) for _ in range(count)]
    try:
        time.sleep(0.2)
        img, mask = job_image(10 ** 6)
        start = time.monotonic()
        client = P.Client.connect(server.url, timeout=60)
        job = client.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), "layer:block3", TINY)
        ok = len(job.result(timeout=120)) == W * H * 3
        return time.monotonic() - start, ok
    finally:
        for s in idle:
            s.close()


def slow_headers(server: Server, count: int) -> list[float]:
    """Seconds until each of `count` clients trickling their request head (a byte every 0.25 s) was closed."""
    head = b"POST /v1/dream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200 + b"\r\n"
    socks = [socket.create_connection(server.address, timeout=30) for _ in range(count)]
    start = time.monotonic()
    closed: dict[int, float] = {}
    for i in range(len(head)):
        for k, s in enumerate(socks):
            if k in closed:
                continue
            try:
                s.send(head[i:i + 1])
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed[k] = time.monotonic() - start
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
            except OSError:
                closed[k] = time.monotonic() - start
        if len(closed) == count or time.monotonic() - start > HEADER_S + 10:
            break
        time.sleep(0.25)
    for s in socks:
        s.close()
    return [closed.get(k, float("inf")) for k in range(count)]


def slow_body(server: Server) -> tuple[float, bytes]:
    """Seconds until a body sent a byte every 0.25 s was answered, and the status line."""
    img, mask = job_image(7)
    header = {"kind": "dream", "id": "slow", "width": W, "height": H, "channels": 3, "sample": "u8", "mask": True,
              "targets": "layer:block3", "settings": TINY}
    body = P.frame_bytes(header, img.tobytes(), mask.tobytes())
    with socket.create_connection(server.address, timeout=30) as s:
        s.sendall(b"POST /v1/dream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        start = time.monotonic()
        s.settimeout(0.25)
        for byte in body:
            try:
                s.send(bytes([byte]))
                answer = s.recv(200)
                if answer:
                    return time.monotonic() - start, answer.split(b"\r\n")[0]
            except socket.timeout:
                continue
            except OSError:
                break
            if time.monotonic() - start > BODY_S + 20:
                break
    return time.monotonic() - start, b"(no answer)"


def hang_up(server: Server) -> float | None:
    """Seconds from a client's hang-up mid-job to the runner's log line for that cancelled job."""
    img, mask = job_image(8)
    client = P.Client.connect(server.url, timeout=60)
    job = client.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), "layer:block3", SLOW)
    for event in job.events(timeout=60):
        if event.position is None and event.fraction > 0:
            break
    before = server.log().count("(the client hung up) in")
    job._sock.shutdown(socket.SHUT_RDWR)
    start = time.monotonic()
    while time.monotonic() - start < 10:
        if server.log().count("(the client hung up) in") > before:
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def queue_memory(server: Server, queued: int, short: int, side: int = 2048) -> tuple[float, float, int]:
    """RSS (MB) before and after `queued` jobs of side² RGBA float pixels wait behind a running one, and `short`
    more uploads that stop one byte short are made too; returns (before, after, how many of those were refused)."""
    client = P.Client.connect(server.url, timeout=120)
    img, mask = job_image(9)
    running = client.dream(img.tobytes(), W, H, 3, "u8", mask.tobytes(), "layer:block3", SLOW)
    for event in running.events(timeout=60):
        if event.position is None and event.fraction > 0.002:
            break
    before = server.rss_mb()
    pixels = np.zeros((side, side, 4), np.float32).tobytes()
    waiting = [client.dream(pixels, side, side, 4, "f32", None, "layer:block3", TINY) for _ in range(queued)]
    for job in waiting:
        next(job.events(timeout=120))
    header = {"kind": "dream", "id": "short", "width": side, "height": side, "channels": 4, "sample": "f32",
              "targets": "layer:block3", "settings": TINY}
    frame = P.frame_bytes(header, pixels)
    refused = 0
    socks = []
    for _ in range(short):
        s = socket.create_connection(server.address, timeout=60)
        s.sendall(b"POST /v1/dream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(frame))
        try:
            s.sendall(frame[:-1])
        except OSError:
            pass
        socks.append(s)
    for s in socks:
        try:
            refused += b" 503 " in s.recv(200)
        except OSError:
            pass
    after = server.rss_mb()
    for s in socks:
        s.close()
    for job in waiting + [running]:
        job.cancel()
    for job in waiting + [running]:
        try:
            job.result(timeout=120)
        except P.WorkerError:
            pass
    return before, after, refused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=15.0, help="stop the job phase after this long")
    args = ap.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "serve.log", "--queue", str(args.clients), "--header-timeout", str(HEADER_S),
                        "--body-timeout", str(BODY_S))
        try:
            print(server.start_line)
            load = os.getloadavg()
            print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")

            seconds, ok = idle_connections(server, args.idle)
            print(f"{args.idle} idle connections open: a new client's {W}×{H} job answered in {seconds:.2f} s "
                  f"({'ok' if ok else 'FAILED'})")
            failed += [] if ok else ["idle connections"]

            closed = slow_headers(server, 20)
            print(f"20 clients trickling their headers: closed after {min(closed):.1f}–{max(closed):.1f} s "
                  f"(--header-timeout {HEADER_S:g})")
            failed += [] if max(closed) <= HEADER_S + 1.0 else ["slow headers"]

            waited, status = slow_body(server)
            allowed = BODY_S + 1 / 1024   # + 1 s per MiB; this body is 6 kB
            print(f"a body trickling a byte every 0.25 s: {status.decode(errors='replace')} after {waited:.1f} s "
                  f"(--body-timeout {BODY_S:g})")
            failed += [] if b"408" in status and waited <= allowed + 1.0 else ["slow body"]

            cancelled = hang_up(server)
            print("a client hanging up mid-job: " + (f"job cancelled {cancelled:.2f} s later" if cancelled is not None
                                                     else "job NOT cancelled within 10 s"))
            failed += [] if cancelled is not None and cancelled < 1.0 else ["hang-up cancel"]

            queued = args.clients - 1
            before, after, refused = queue_memory(server, queued, 4)
            print(f"{queued} queued 2048×2048 RGBA float jobs ({queued * 64} MiB of pixels, spooled to disk) behind a "
                  f"running one, and 4 uploads stopping 1 byte short: RSS {before:.0f} MB -> {after:.0f} MB; "
                  f"{refused} of the 4 answered 503 busy")
            failed += [] if after - before < 64 else ["queue memory"]

            result = many_jobs(server, args.jobs, args.clients, deadline)
            growth = (result["rss_end"] - result["rss_50"]) / result["rss_50"] * 100
            print(f"{args.jobs} jobs of {W}×{H} from {args.clients} clients: {result['answered']} answered in "
                  f"{result['seconds']:.0f} s ({result['answered'] / result['seconds']:.1f} jobs/s), "
                  f"{len(result['problems'])} problems, {result['busy_retries']} busy answers retried; RSS "
                  f"{result['rss_50']:.0f} MB after 50, {result['rss_end']:.0f} MB after all ({growth:+.1f} %)")
            if os.environ.get("SOAK_LOG"):
                Path(os.environ["SOAK_LOG"]).write_text(server.log())
            for problem in result["problems"][:10]:
                print("  " + problem)
            failed += [] if result["answered"] == args.jobs and not result["problems"] else ["jobs lost or wrong"]
            failed += [] if abs(growth) <= 10 else ["RSS growth"]
            expected = result["answered"] + 1   # and the job among the idle connections
            for _ in range(100):   # the runner writes its line just after the result went out
                log = server.log()
                done_lines = sum(1 for line in log.splitlines() if ": done in " in line)
                if done_lines >= expected:
                    break
                time.sleep(0.05)
            print(f"server log: {len(log.splitlines())} lines, {done_lines} 'done' job lines for {expected} jobs, "
                  f"{'no' if 'Traceback' not in log else 'SOME'} tracebacks")
            failed += [] if "Traceback" not in log else ["traceback in the log"]
            failed += [] if done_lines == expected else ["job log lines"]
        finally:
            server.close()
    print("soak: " + ("all checks held" if not failed else "FAILED: " + ", ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
