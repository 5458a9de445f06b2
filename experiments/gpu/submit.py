"""Uploads a data set to an efnf service and submits job payloads for it.

    python -m experiments.gpu.submit --api http://gpu-host:8000 --dataset rotmnist-train.npz \\
        experiments/gpu/payloads/rotation_mnist_*.json [--watch]

Each payload file is a ``POST /v1/jobs`` body without ``dataset_id``, which this fills in from the
upload. Prints one line per job (its id and the payload's file name); ``--watch`` then polls
until every job has finished and prints its final metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

__all__ = ["job_body", "submit", "upload_dataset", "watch"]

FINISHED = {"succeeded", "failed", "cancelled"}
UPLOAD_TIMEOUT_S = 600.0


def job_body(payload: dict, dataset_id: str) -> dict:
    """The ``POST /v1/jobs`` body: the payload's flow and training, for ``dataset_id``.

    Raises:
        ValueError: the payload already names a data set or lacks its ``flow``.
    """
    if "dataset_id" in payload:
        raise ValueError("payload files leave dataset_id out; it comes from the upload")
    if "flow" not in payload:
        raise ValueError("a payload needs a 'flow' object (and usually 'training')")
    return {"dataset_id": dataset_id, **payload}


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        raise SystemExit(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}"
        )


def upload_dataset(client: httpx.Client, path: Path, name: str) -> str:
    """Uploads ``path`` (``.npz``/``.npy``/``.zip``) and returns the new data set's id."""
    with path.open("rb") as handle:
        response = client.post(
            "/v1/datasets",
            files={"file": (path.name, handle)},
            data={"name": name},
            timeout=UPLOAD_TIMEOUT_S,
        )
    _raise_for_status(response)
    return response.json()["id"]


def submit(client: httpx.Client, dataset_id: str, payload_path: Path) -> str:
    """Submits one payload file as a job on ``dataset_id``; returns the job id."""
    body = job_body(json.loads(payload_path.read_text(encoding="utf-8")), dataset_id)
    response = client.post("/v1/jobs", json=body)
    _raise_for_status(response)
    return response.json()["id"]


def watch(client: httpx.Client, job_ids: list[str], interval_s: float = 60.0) -> None:
    """Polls the jobs until all have finished, printing progress and final metrics."""
    pending = list(job_ids)
    while pending:
        for job_id in list(pending):
            response = client.get(f"/v1/jobs/{job_id}")
            _raise_for_status(response)
            job = response.json()
            print(f"{job_id}: {job['state']} {job['progress']:.1f}% {job.get('latest_metrics')}")
            if job["state"] in FINISHED:
                pending.remove(job_id)
        if pending:
            time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.gpu.submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--dataset", type=Path, required=True, help="the .npz to upload")
    parser.add_argument("--name", default=None, help="data set name (default: the file stem)")
    parser.add_argument("payloads", type=Path, nargs="+", help="job payload .json files")
    parser.add_argument("--watch", action="store_true", help="poll until the jobs finish")
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.api, timeout=60.0) as client:
        dataset_id = upload_dataset(client, args.dataset, args.name or args.dataset.stem)
        print(f"dataset {dataset_id}")
        job_ids = []
        for path in args.payloads:
            job_ids.append(submit(client, dataset_id, path))
            print(f"job {job_ids[-1]} {path.name}")
        if args.watch:
            watch(client, job_ids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
