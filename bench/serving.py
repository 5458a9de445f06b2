"""Serving overhead: HTTP against the model's own throughput, batching, cold load.

    python bench/serving.py            # the full table (a few minutes on 2 cores)
    python bench/serving.py --quick    # points only, fewer cells, short cells (a smoke run)

One run: a temporary embedded deployment (SQLite) gets two models written straight into its
database (2-D points, C8, width 8, depth 4; 8x8 images, C4, the default width and depth; random
initial weights: speed does not depend on training), and ``python -m app serve --no-worker``
serves them on a spare port, with one torch thread as the bench itself uses. For each model,
endpoint (``log-prob`` exact / ``samples``), items per request (1, 16, 256) and concurrent
keep-alive clients (1, 8, 32) it runs the clients for ``--seconds`` and prints items/s over
HTTP, the ratio to the in-process items/s of the same call at the same batch (``flow.log_prob``
or ``flow.sample`` on the loaded model), p50/p99 latency, and p50 minus the model's own time per
request. Cold load: the first request of each model on the fresh server (nothing loaded, no
escnn basis built), and the split of a load in a fresh process: blob read from the database,
safetensors parse, flow build, weight load, Lipschitz audit, first call.

Where the time goes: each cell also prints the server process's CPU time per request ("srv
ms") and the bench clients' own ("cli ms"), both read from the kernel over the cell. The
clients (``--client raw``, the default) are plain HTTP/1.1 keep-alive connections on asyncio
streams with ``TCP_NODELAY``, about 0.1 ms of CPU a request; ``--client httpx`` uses
``httpx.AsyncClient`` instead, which costs ~1.3 ms of CPU a request at 1 client and ~5 ms at 32
(its connection pool), so that on 2 shared cores the clients rather than the server would set
the 32-client figures. The table sends JSON bodies both ways; the "npy bodies" rows repeat the
1-client log-prob cells with ``application/x-npy`` request and response bodies.

All figures are ratios within one run or single-run times on whatever machine runs it; on a
shared machine they move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from app.core.db.api_keys import create_api_key  # noqa: E402
from app.core.db.base import new_id  # noqa: E402
from app.core.db.migrate import upgrade_to_head  # noqa: E402
from app.core.db.models import Checkpoint, Job  # noqa: E402
from app.core.db.session import session_scope  # noqa: E402
from flows import FlowConfig, build_flow  # noqa: E402
from flows.checkpoint import (  # noqa: E402
    load_flow,
    load_model_state,
    read_checkpoint,
    save_checkpoint,
)

MODELS = {
    "points": FlowConfig(family="residual", group="C8", data_shape=[2], width=8, depth=4),
    "images": FlowConfig(family="residual", group="C4", data_shape=[1, 8, 8]),
}


@dataclass
class Cell:
    model: str
    endpoint: str
    items: int
    clients: int
    requests: int
    errors: int
    items_per_s: float
    in_process_items_per_s: float
    p50_ms: float
    p99_ms: float
    model_ms: float
    server_cpu_ms: float = math.nan
    client_cpu_ms: float = math.nan

    @property
    def ratio(self) -> float:
        return self.items_per_s / self.in_process_items_per_s


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_models(database_url: str) -> tuple[str, dict[str, str], dict[str, bytes]]:
    """A key and one finished job + checkpoint per model, written straight to the database."""
    upgrade_to_head(database_url)
    blobs = {
        name: save_checkpoint(build_flow(config, seed=0).eval()) for name, config in MODELS.items()
    }
    ids: dict[str, str] = {}
    with session_scope(database_url) as session:
        key = create_api_key(session, "bench", "bench/serving.py").key
        for name, blob in blobs.items():
            job = Job(
                id=new_id("job"),
                owner="bench",
                dataset_id=None,
                state="succeeded",
                flow_config=json.loads(MODELS[name].model_dump_json()),
                train_config={},
                step=0,
                total_steps=0,
                attempts=1,
                cancel_requested=False,
                attempt_start_step=0,
            )
            session.add(job)
            session.flush()
            session.add(
                Checkpoint(
                    id=new_id("ckpt"),
                    owner="bench",
                    job_id=job.id,
                    step=0,
                    final=True,
                    size_bytes=len(blob),
                    sha256="0" * 64,
                    blob=blob,
                )
            )
            ids[name] = job.id
    return key, ids, blobs


def cold_load_split(database_url: str, model_id: str) -> dict[str, float]:
    """Seconds of each step of a model load in this (fresh) process, after the imports the
    service does at start (``app.batching``: torch's lazily imported symbolic shapes)."""
    from sqlalchemy import select

    imports = time.perf_counter()
    import app.batching  # noqa: F401

    start = time.perf_counter()
    with session_scope(database_url) as session:
        checkpoint_id = session.scalar(
            select(Checkpoint.id).where(Checkpoint.job_id == model_id).limit(1)
        )
        blob = session.scalar(select(Checkpoint.blob).where(Checkpoint.id == checkpoint_id))
    fetched = time.perf_counter()
    info, state, _ = read_checkpoint(blob)
    parsed = time.perf_counter()
    flow = build_flow(info.flow_config)
    built = time.perf_counter()
    load_model_state(flow, state)
    flow.eval()
    loaded = time.perf_counter()
    flow.audit_lipschitz()
    audited = time.perf_counter()
    with torch.no_grad():
        flow.log_prob(flow.sample(1, seed=0), method="exact")
    first = time.perf_counter()
    return {
        "service imports": start - imports,
        "fetch": fetched - start,
        "parse": parsed - fetched,
        "build": built - parsed,
        "load": loaded - built,
        "audit": audited - loaded,
        "first call": first - audited,
        "total": first - start,
    }


def in_process_rate(flow: Any, endpoint: str, items: int, seconds: float) -> float:
    """Items per second of the model's own call at this batch size."""
    x = flow.sample(items, seed=1).detach()
    with torch.no_grad():
        flow.log_prob(x, method="exact")  # warm-up: first calls pay one-off setup
    calls, start = 0, time.perf_counter()
    with torch.no_grad():
        while True:
            if endpoint == "log-prob":
                flow.log_prob(x, method="exact")
            else:
                flow.sample(items, seed=calls)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and calls >= 2:
                return calls * items / elapsed


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads the answer
    (``Content-Length`` bodies, which is all the service sends for these routes)."""

    def __init__(self, port: int, head: bytes, body: bytes) -> None:
        self.port = port
        self.request = head + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(self.request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def request_head(path: str, key: str, content_type: str, accept: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nAccept: {accept}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def payload(endpoint: str, model: str, items: int) -> dict[str, Any]:
    if endpoint == "samples":
        return {"n": items, "seed": 3}
    rng = np.random.default_rng(0)
    if model == "points":
        inputs = rng.normal(size=(items, 2)).round(4).tolist()
    else:
        inputs = rng.integers(0, 256, size=(items, 1, 8, 8)).tolist()
    return {"inputs": inputs, "method": "exact"}


def encoded(body: dict[str, Any], npy: bool) -> tuple[bytes, str, str]:
    """The request body, its content type and the Accept header: JSON, or .npy both ways
    (scoring: the inputs as a .npy body, method and seed in the query)."""
    if not npy:
        return json.dumps(body).encode(), "application/json", "application/json"
    if "inputs" in body:
        buffer = io.BytesIO()
        array = np.asarray(body["inputs"])
        np.save(buffer, array.astype(np.uint8 if array.dtype.kind == "i" else np.float32))
        return buffer.getvalue(), "application/x-npy", "application/x-npy"
    return json.dumps(body).encode(), "application/json", "application/x-npy"


async def drive(
    url: str,
    key: str,
    path: str,
    body: dict[str, Any],
    clients: int,
    seconds: float,
    client: str = "raw",
    npy: bool = False,
) -> tuple[list[float], int]:
    content, content_type, accept = encoded(body, npy)
    if npy and "inputs" in body:
        path += f"?method={body['method']}"
    if client == "httpx":
        return await drive_httpx(url, key, path, content, content_type, accept, clients, seconds)
    port = int(url.rsplit(":", 1)[1])
    head = request_head(path, key, content_type, accept, len(content))
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        connection = RawClient(port, head, content)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status, _ = await connection.send()
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        finally:
            connection.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors


async def drive_httpx(
    url: str,
    key: str,
    path: str,
    content: bytes,
    content_type: str,
    accept: str,
    clients: int,
    seconds: float,
) -> tuple[list[float], int]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(
                    path, content=content, headers={"content-type": content_type}
                )
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--no-worker", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start; see {log}")


def table(cells: list[Cell]) -> str:
    lines = [
        f"{'model':<7} {'endpoint':<9} {'items':>5} {'clients':>7} {'reqs':>6} {'err':>4} "
        f"{'items/s':>9} {'in-proc':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'over ms':>8} "
        f"{'srv ms':>7} {'cli ms':>7}"
    ]
    for c in cells:
        lines.append(
            f"{c.model:<7} {c.endpoint:<9} {c.items:>5} {c.clients:>7} {c.requests:>6} "
            f"{c.errors:>4} {c.items_per_s:>9.1f} {c.in_process_items_per_s:>9.1f} "
            f"{c.ratio:>6.2f} {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} {c.p50_ms - c.model_ms:>8.2f} "
            f"{c.server_cpu_ms:>7.2f} {c.client_cpu_ms:>7.2f}"
        )
    return "\n".join(lines)


def measure(
    server_pid: int,
    url: str,
    key: str,
    path: str,
    cell: tuple[str, str, int, int],
    own: float,
    seconds: float,
    client: str,
    npy: bool = False,
) -> Cell:
    """One cell: the clients for ``seconds``, with the CPU both sides spent."""
    name, endpoint, items, clients = cell
    server_cpu, client_cpu = process_cpu_s(server_pid), time.process_time()
    latencies, errors = asyncio.run(
        drive(url, key, path, payload(endpoint, name, items), clients, seconds, client, npy)
    )
    server_cpu = process_cpu_s(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    elapsed = max(seconds, max(latencies, default=0.0))
    count = max(len(latencies), 1)
    return Cell(
        name,
        endpoint,
        items,
        clients,
        len(latencies),
        errors,
        (len(latencies) - errors) * items / elapsed,
        own,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        items / own * 1000,
        server_cpu / count * 1000,
        client_cpu / count * 1000,
    )


def run(quick: bool, seconds: float, client: str = "raw") -> str:
    torch.set_num_threads(1)
    models = ["points"] if quick else list(MODELS)
    sizes = [1, 16] if quick else [1, 16, 256]
    client_counts = [1, 4] if quick else [1, 8, 32]
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="efnf-bench-") as tmp:
        database_url = f"sqlite:///{tmp}/efnf.sqlite3"
        key, ids, blobs = register_models(database_url)
        env = {
            **os.environ,
            "EFNF_DATABASE_URL": database_url,
            "EFNF_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.sqlite3",
            "EFNF_DATA_DIR": tmp,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }
        splits = {}
        for name in models:
            result = subprocess.run(
                [sys.executable, __file__, "--cold-split", database_url, ids[name]],
                env=env,
                capture_output=True,
                check=True,
                text=True,
            )
            splits[name] = json.loads(result.stdout.strip().splitlines()[-1])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(env, port, Path(tmp) / "server.log")
        try:
            cold = {}
            for name in models:
                body = payload("log-prob", name, 1)
                start = time.perf_counter()
                response = httpx.post(
                    f"{url}/v1/models/{ids[name]}/log-prob",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                )
                cold[name] = time.perf_counter() - start
                response.raise_for_status()
            cells, npy_cells = [], []
            for name in models:
                flow = load_flow(blobs[name])
                for endpoint in ("log-prob", "samples"):
                    for items in sizes:
                        if name == "images" and endpoint == "log-prob" and items == 256:
                            continue  # exact image log-dets at 256 items: seconds per request
                        own = in_process_rate(flow, endpoint, items, seconds / 2)
                        path = f"/v1/models/{ids[name]}/{endpoint}"
                        for clients in client_counts:
                            cell = (name, endpoint, items, clients)
                            cells.append(
                                measure(server.pid, url, key, path, cell, own, seconds, client)
                            )
                        if endpoint == "log-prob" and items == max(sizes):
                            cell = (name, endpoint, items, 1)
                            npy_cells.append(
                                measure(
                                    server.pid, url, key, path, cell, own, seconds, client, True
                                )
                            )
        finally:
            server.terminate()
            server.wait(30)
    load = os.getloadavg()[0]
    out.append(
        f"one run, load average {load:.1f} on {os.cpu_count()} cores, {seconds} s a cell, "
        f"{client} clients"
    )
    out.append(table(cells))
    out.append("")
    out.append("npy bodies (application/x-npy request and response), 1 client")
    out.append(table(npy_cells))
    out.append("")
    out.append("batching: 1 item per request, throughput at the most clients / at 1 client")
    for name in models:
        for endpoint in ("log-prob", "samples"):
            row = [c for c in cells if (c.model, c.endpoint, c.items) == (name, endpoint, 1)]
            if row:
                gain = row[-1].items_per_s / row[0].items_per_s
                spread = row[-1].p99_ms / row[-1].p50_ms
                out.append(
                    f"  {name:<7} {endpoint:<9} x{gain:.2f} at {row[-1].clients} clients, "
                    f"p99/p50 {spread:.2f}"
                )
    out.append("")
    out.append(
        "cold load (s): first request on the fresh server; split of a load in a new process"
    )
    for name in models:
        split = "  ".join(f"{k} {v:.3f}" for k, v in splits[name].items())
        out.append(f"  {name:<7} first request {cold[name]:.3f}   {split}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="points only, few short cells")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per cell")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="the load's clients: plain keep-alive HTTP/1.1 connections (default) or httpx",
    )
    parser.add_argument(
        "--cold-split", nargs=2, metavar=("DB_URL", "MODEL_ID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.cold_split:
        torch.set_num_threads(1)
        print(json.dumps(cold_load_split(*args.cold_split)))
        return ""
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 3.0)
    report = run(args.quick, seconds, args.client)
    print(report)
    return report


if __name__ == "__main__":
    main()
