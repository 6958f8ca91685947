"""Serving load benchmark: N concurrent clients against ``oddeye serve`` on loopback.

The server runs in its own process (``oddeye serve`` on 127.0.0.1, a free port) so its memory is
its own; clients are asyncio + httpx in this process, each posting one image at a time in a loop
for a bounded time. Reported per client count: requests/s, p50/p99 latency of successful
requests, 503 (queue full) answers, other errors; and the server's RSS before and after.
Traffic never leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process in MB (Linux /proc; NaN elsewhere)."""
    cur = peak = float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024.0
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return cur, peak


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


async def _load(url: str, payloads: list[tuple[str, bytes]], clients: int, duration: float,
                overlay: bool) -> dict:
    """Run ``clients`` request loops for ``duration`` seconds; latencies and outcome counts."""
    import httpx

    lat: list[float] = []
    counts = {"ok": 0, "busy": 0, "errors": 0}
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        async def worker(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                name, data = payloads[i % len(payloads)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files={"file": (name, data)},
                                          params={"overlay": str(overlay).lower()})
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                    counts["ok"] += 1
                elif r.status_code == 503:
                    counts["busy"] += 1
                    await asyncio.sleep(0.05)  # a polite client backs off before retrying
                else:
                    counts["errors"] += 1

        t_start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed = time.perf_counter() - t_start
    return {"clients": clients, "elapsed": elapsed, "rps": counts["ok"] / elapsed,
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99), **counts}


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "v1/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not healthy after {timeout:.0f} s")


def run(out_path: str | Path | None = None, model: str | Path | None = None,
        clients: Sequence[int] = (1, 4, 16), duration: float = 10.0, max_pending: int = 8,
        overlay: bool = True, size: int = 256, threads: int | None = None,
        section: str = "serving") -> str:
    """Load-test ``oddeye serve`` at each client count and write section ``serving``."""
    from oddeye.bench.onnx_suite import fit_synthetic, synthetic_images
    from oddeye.bench.results import DEFAULT_RESULTS, write_section

    with tempfile.TemporaryDirectory(prefix="oddeye-serve-bench-") as tmp:
        if model is None:
            print(f"serving bench: fitting patchcore on synthetic grid ({size}px)",
                  file=sys.stderr, flush=True)
            model = fit_synthetic("patchcore", tmp, size=size)
        _, images = synthetic_images(tmp, size)
        payloads = [(p.name, p.read_bytes()) for p in images]
        port = free_port()
        url = f"http://{HOST}:{port}/"
        cmd = [sys.executable, "-m", "oddeye.cli", "serve", "--model", str(model), "--host",
               HOST, "--port", str(port), "--max-pending", str(max_pending),
               "--log-level", "warning"]
        if threads:
            cmd += ["--threads", str(threads)]
        log = open(Path(tmp) / "server.log", "w+")  # closed after the server stops
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            try:
                _wait_healthy(url, proc)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; server output:\n{log.read()[-3000:]}") from None
            import httpx

            info = httpx.get(url + "v1/model", timeout=5).json()
            rss_before, _ = rss_mb(proc.pid)
            rows = []
            for n in clients:
                print(f"serving bench: {n} clients for {duration:.0f} s", file=sys.stderr,
                      flush=True)
                rows.append(asyncio.run(_load(url, payloads, n, duration, overlay)))
            rss_after, rss_peak = rss_mb(proc.pid)
            health = httpx.get(url + "v1/health", timeout=5).json()
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
    img_kb = statistics.mean(len(d) for _, d in payloads) / 1024
    lines = [f"## HTTP serving ({section})", "",
             f"`oddeye serve` ({info['method']}, {info['backbone']}, {info['input_size']}px, "
             f"max {max_pending} requests in progress, one inference thread"
             f"{f', {threads} torch threads' if threads else ''}) on 127.0.0.1; clients are "
             f"asyncio/httpx loops in another process on the same machine, each posting one "
             f"{size}x{size} PNG (~{img_kb:.0f} KB) at a time for {duration:.0f} s, overlay PNG "
             f"{'included' if overlay else 'not requested'}; a 503 (queue full) makes the client "
             "wait 50 ms. Latency over successful requests.", "",
             "| clients | ok requests | requests/s | p50 ms | p99 ms | 503 busy | errors |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['ok']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['busy']} | {r['errors']} |")
    lines += ["", f"Server memory (RSS): {rss_before:.0f} MB after start and warm-up, "
              f"{rss_after:.0f} MB after the load (peak {rss_peak:.0f} MB); server counters: "
              f"{health['requests']} admitted, {health['rejected']} rejected with 503, "
              f"{health['errors']} internal errors."]
    body = "\n".join(lines)
    write_section(section, body, out_path or DEFAULT_RESULTS)
    return body


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oddeye.bench.serving_suite``: the suite with its options on the command line."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m oddeye.bench.serving_suite")
    p.add_argument("--model", help=".oddeye or .onnx file (default: PatchCore fitted on synth)")
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per client count")
    p.add_argument("--max-pending", type=int, default=8)
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int)
    p.add_argument("--section", default="serving")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")
    a = p.parse_args(argv)
    print(run(out_path=a.out, model=a.model, clients=a.clients, duration=a.duration,
              max_pending=a.max_pending, overlay=not a.no_overlay, size=a.size,
              threads=a.threads, section=a.section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
