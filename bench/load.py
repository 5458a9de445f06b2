"""Load test of a running service: N concurrent clients scoring and sampling for T seconds.

    python bench/load.py --url http://127.0.0.1:8000 --key "$(cat var/local-api-key)" \
        [--model job_...] [--clients 50] [--seconds 60]

Each client is a loop of its own (asyncio + httpx, one shared connection pool) that alternates
``POST /v1/models/{id}/log-prob`` (a batch of points, exact log-det) and
``POST /v1/models/{id}/samples`` (JSON), waiting for each answer before it sends the next.
Without ``--model`` it first generates a small built-in data set (eight Gaussians) and trains a
tiny C4 point model on it, and uses that. It prints, per endpoint and in total, the requests
completed, errors (any status other than 200, or no answer), requests per second, and the
median and 99th-percentile latency. The service is only read: nothing is written during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

TINY_FLOW = {"family": "residual", "group": "C4", "data_shape": [2], "width": 4, "depth": 2}
TINY_TRAINING = {
    "steps": 200,
    "batch_size": 128,
    "metric_interval": 50,
    "checkpoint_interval": 100,
}
TRAIN_TIMEOUT_S = 600.0


@dataclass
class Endpoint:
    """What one endpoint answered during the run."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: dict[str, int] = field(default_factory=dict)

    def record(self, latency_s: float, error: str | None) -> None:
        self.latencies_s.append(latency_s)
        if error is not None:
            self.errors += 1
            self.error_examples[error] = self.error_examples.get(error, 0) + 1


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``nan`` if empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def train_tiny_model(client: httpx.Client) -> str:
    """Generates a data set, trains a tiny model on it, and returns the model's id."""
    dataset = client.post(
        "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 4000, "seed": 0}
    )
    dataset.raise_for_status()
    job = client.post(
        "/v1/jobs",
        json={"dataset_id": dataset.json()["id"], "flow": TINY_FLOW, "training": TINY_TRAINING},
    )
    job.raise_for_status()
    job_id = job.json()["id"]
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{job_id}").json()
        if state["state"] == "succeeded":
            return job_id
        if state["state"] in ("failed", "cancelled"):
            raise SystemExit(f"training job {job_id} {state['state']}: {state['error']}")
        time.sleep(1.0)
    raise SystemExit(f"training job {job_id} did not finish within {TRAIN_TIMEOUT_S:.0f} s")


def requests_of(model_id: str, batch: int, samples: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The two requests each client alternates: (endpoint name, path, JSON body)."""
    points = [[4.0 * math.cos(0.7 * i), 4.0 * math.sin(0.7 * i)] for i in range(batch)]
    return [
        ("log-prob", f"/v1/models/{model_id}/log-prob", {"inputs": points, "method": "exact"}),
        ("samples", f"/v1/models/{model_id}/samples", {"n": samples, "seed": 1}),
    ]


async def run_client(
    client: httpx.AsyncClient,
    index: int,
    requests: list[tuple[str, str, dict[str, Any]]],
    stop_at: float,
    results: dict[str, Endpoint],
) -> None:
    turn = index  # clients start on different endpoints so both are busy from the start
    while time.monotonic() < stop_at:
        name, path, body = requests[turn % len(requests)]
        turn += 1
        started = time.monotonic()
        error: str | None = None
        try:
            response = await client.post(path, json=body)
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as failure:
            error = type(failure).__name__
        results[name].record(time.monotonic() - started, error)


async def run_load(
    url: str,
    key: str,
    model_id: str,
    clients: int,
    seconds: float,
    batch: int,
    samples: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[dict[str, Endpoint], float]:
    """Runs the clients; ``transport`` replaces the network (an ASGI app in tests)."""
    requests = requests_of(model_id, batch, samples)
    results = {name: Endpoint() for name, _, _ in requests}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=httpx.Timeout(60.0, pool=None),
        transport=transport,
    ) as client:
        warm = await client.post(requests[0][1], json=requests[0][2])
        if warm.status_code != 200:
            raise SystemExit(f"warm-up request failed: {warm.status_code} {warm.text}")
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(
            *(run_client(client, index, requests, stop_at, results) for index in range(clients))
        )
        elapsed = time.monotonic() - started
    return results, elapsed


def report(results: dict[str, Endpoint], elapsed: float, clients: int) -> str:
    total = Endpoint()
    for endpoint in results.values():
        total.latencies_s += endpoint.latencies_s
        total.errors += endpoint.errors
        for error, count in endpoint.error_examples.items():
            total.error_examples[error] = total.error_examples.get(error, 0) + count
    lines = [
        f"{clients} clients for {elapsed:.1f} s",
        f"{'endpoint':<10} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for name, endpoint in [*results.items(), ("total", total)]:
        count = len(endpoint.latencies_s)
        lines.append(
            f"{name:<10} {count:>9} {endpoint.errors:>7} {count / elapsed:>8.1f} "
            f"{1000 * percentile(endpoint.latencies_s, 0.50):>8.1f} "
            f"{1000 * percentile(endpoint.latencies_s, 0.99):>8.1f}"
        )
    if total.error_examples:
        lines.append("errors: " + ", ".join(f"{e} x{n}" for e, n in total.error_examples.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument("--key", required=True, help="an API key (Authorization: Bearer)")
    parser.add_argument("--model", help="a model (job) id; default: train a tiny one first")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the run")
    parser.add_argument("--batch", type=int, default=16, help="points per scoring request")
    parser.add_argument("--samples", type=int, default=16, help="samples per sampling request")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.batch < 1 or args.samples < 1:
        parser.error("--clients, --seconds, --batch and --samples must be positive")
    model_id = args.model
    if model_id is None:
        with httpx.Client(
            base_url=args.url, headers={"Authorization": f"Bearer {args.key}"}, timeout=60
        ) as client:
            model_id = train_tiny_model(client)
        print(f"trained model {model_id}")
    results, elapsed = asyncio.run(
        run_load(
            args.url, args.key, model_id, args.clients, args.seconds, args.batch, args.samples
        )
    )
    print(f"model {model_id}, {args.batch} points per log-prob, {args.samples} samples per draw")
    print(report(results, elapsed, args.clients))


if __name__ == "__main__":
    main()
