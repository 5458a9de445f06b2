"""A typed HTTP client of the efnf REST API: one method per route.

It speaks only HTTP (it imports neither ``app`` nor ``flows``), so it runs on any machine that
can reach a server. Responses are returned as the JSON the server sends, typed with the
``TypedDict`` shapes of ``efnf_client.types``; binary routes (previews, ``.npy`` and PNG
samples, checkpoints) return bytes.

Every error the server answers (4xx, 5xx) and every failure to reach it raises
:class:`EfnfError`, which carries the server's ``message`` and the offending ``field``.

Timeouts are explicit (:data:`DEFAULT_TIMEOUT`). Retries: a connection that cannot be opened is
retried for every method (the request was never sent); a reply of 502, 503 or 504, or a
connection dropped mid-request, is retried only for GET, which cannot change anything. Delays
double from ``backoff_s``.

>>> with Client("http://127.0.0.1:8000", api_key="efnf_...") as client:  # doctest: +SKIP
...     job = client.submit_job(dataset_id, {"group": "C4", "data_shape": [2]}, {"steps": 500})
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import httpx
import numpy as np

from efnf_client.types import (
    Dataset,
    DatasetPage,
    Job,
    JobPage,
    MetricsPage,
    Model,
    ModelPage,
    Samples,
    ScoreArrays,
    Scores,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=120.0, pool=5.0)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
RETRIED_STATUSES = frozenset({502, 503, 504})
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
ScoreMethod = Literal["auto", "exact", "estimate"]
# The server's binary bodies: one NumPy .npy file (numpy.save, never pickled).
NPY_MEDIA = "application/x-npy"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _from_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


class EfnfError(Exception):
    """A request failed: the server's error (``status_code``, ``message``, ``field``, and the
    individual ``errors``), or no answer at all (``status_code`` None)."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        field: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field
        self.errors = list(errors)

    def __str__(self) -> str:
        status = f"HTTP {self.status_code}: " if self.status_code is not None else ""
        field = f" (field: {self.field})" if self.field else ""
        return f"{status}{self.message}{field}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> EfnfError:
        """Reads the server's envelope ``{"message", "field", "errors"}``; any other body (a
        proxy's HTML page) becomes the message as text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return cls(
                body["message"],
                response.status_code,
                body.get("field"),
                body.get("errors") or [],
            )
        text = response.text.strip()[:500] or response.reason_phrase
        return cls(text, response.status_code)


class Client:
    """The efnf API at ``url`` with the API key ``api_key`` (``Authorization: Bearer``)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        headers = {"User-Agent": "efnf-client/0.1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport or httpx.HTTPTransport(retries=retries),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # The transport ------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Sends one request with the retries above; raises :class:`EfnfError` unless 2xx."""
        retried = method.upper() == "GET"  # only idempotent requests are sent twice
        for attempt in range(self.retries + 1):
            may_retry = retried and attempt < self.retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.ConnectError as error:
                # Retried by the transport already; the request was never sent.
                raise EfnfError(f"cannot reach {self.url}: {error}") from error
            except httpx.TimeoutException as error:
                if not may_retry:
                    raise EfnfError(
                        f"{method} {path}: timed out ({type(error).__name__})"
                    ) from error
            except httpx.TransportError as error:
                if not may_retry:
                    raise EfnfError(f"{method} {path}: {type(error).__name__}: {error}") from error
            else:
                if response.is_success:
                    return response
                if not (may_retry and response.status_code in RETRIED_STATUSES):
                    raise EfnfError.from_response(response)
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # Health -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: the process is alive."""
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: database and broker reachable (raises with 503 otherwise)."""
        return self._json("GET", "/readyz")

    def metrics_text(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        return self.request("GET", "/metrics").text

    # Data sets ----------------------------------------------------------------------------

    def upload_dataset(
        self, file: str | Path | bytes | BinaryIO, name: str | None = None, filename: str = ""
    ) -> Dataset:
        """``POST /v1/datasets``: a .npy, .npz or .csv of points, or a .zip of PNG images.

        ``file`` is a path, bytes (give ``filename``, whose suffix says the format) or a
        binary file object.
        """
        if isinstance(file, str | Path):
            path = Path(file)
            content: bytes | BinaryIO = path.read_bytes()
            filename = filename or path.name
        else:
            content = file
        data = {"name": name} if name is not None else {}
        files = {"file": (filename or "upload", content, "application/octet-stream")}
        return cast(Dataset, self._json("POST", "/v1/datasets", files=files, data=data))

    def create_builtin_dataset(self, name: str, n: int | None = None, seed: int = 0) -> Dataset:
        """``POST /v1/datasets/builtin``: e.g. eight_gaussians, rings, digits."""
        body: dict[str, Any] = {"name": name, "seed": seed}
        if n is not None:
            body["n"] = n
        return cast(Dataset, self._json("POST", "/v1/datasets/builtin", json=body))

    def list_datasets(self, limit: int = 50, offset: int = 0) -> DatasetPage:
        """``GET /v1/datasets``: one page, newest first, with the ``total``."""
        params = {"limit": limit, "offset": offset}
        return cast(DatasetPage, self._json("GET", "/v1/datasets", params=params))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """``GET /v1/datasets/{dataset_id}``."""
        return cast(Dataset, self._json("GET", f"/v1/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: str) -> None:
        """``DELETE /v1/datasets/{dataset_id}`` (409 while a queued or running job uses it)."""
        self.request("DELETE", f"/v1/datasets/{dataset_id}")

    def dataset_preview_png(self, dataset_id: str) -> bytes:
        """``GET /v1/datasets/{dataset_id}/preview.png``: an image grid or a scatter plot."""
        return self.request("GET", f"/v1/datasets/{dataset_id}/preview.png").content

    # Jobs ---------------------------------------------------------------------------------

    def submit_job(
        self,
        dataset_id: str,
        flow: Mapping[str, Any],
        training: Mapping[str, Any] | None = None,
    ) -> Job:
        """``POST /v1/jobs``: ``flow`` and ``training`` are the server's FlowConfig and
        TrainConfig as JSON objects."""
        body = {"dataset_id": dataset_id, "flow": dict(flow), "training": dict(training or {})}
        return cast(Job, self._json("POST", "/v1/jobs", json=body))

    def list_jobs(
        self,
        state: str | None = None,
        dataset_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """``GET /v1/jobs``: one page, newest first, with the ``total`` matching the filters."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state is not None:
            params["state"] = state
        if dataset_id is not None:
            params["dataset_id"] = dataset_id
        return cast(JobPage, self._json("GET", "/v1/jobs", params=params))

    def get_job(self, job_id: str) -> Job:
        """``GET /v1/jobs/{job_id}``: state, step, progress, ETA, speed, latest metrics."""
        return cast(Job, self._json("GET", f"/v1/jobs/{job_id}"))

    def job_metrics(
        self, job_id: str, after_step: int | None = None, limit: int = 10_000
    ) -> MetricsPage:
        """``GET /v1/jobs/{job_id}/metrics``: the history by step; page with ``after_step``."""
        params: dict[str, Any] = {"limit": limit}
        if after_step is not None:
            params["after_step"] = after_step
        return cast(MetricsPage, self._json("GET", f"/v1/jobs/{job_id}/metrics", params=params))

    def cancel_job(self, job_id: str) -> Job:
        """``POST /v1/jobs/{job_id}/cancel`` (409 once finished)."""
        return cast(Job, self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def delete_job(self, job_id: str) -> None:
        """``DELETE /v1/jobs/{job_id}``: a finished job with its checkpoints and metrics."""
        self.request("DELETE", f"/v1/jobs/{job_id}")

    def follow_job(self, job_id: str, interval_s: float = 1.0) -> Iterator[Job]:
        """Yields the job every ``interval_s`` until it is finished (the last one yielded)."""
        while True:
            job = self.get_job(job_id)
            yield job
            if job["state"] in TERMINAL_STATES:
                return
            time.sleep(interval_s)

    def wait_for_job(self, job_id: str, interval_s: float = 1.0) -> Job:
        """Polls until the job is finished; returns it (whatever its final state)."""
        *_, last = self.follow_job(job_id, interval_s)
        return last

    # Models -------------------------------------------------------------------------------

    def list_models(self, limit: int = 50, offset: int = 0) -> ModelPage:
        """``GET /v1/models``: the succeeded jobs' models, newest first, with the ``total``."""
        params = {"limit": limit, "offset": offset}
        return cast(ModelPage, self._json("GET", "/v1/models", params=params))

    def get_model(self, model_id: str) -> Model:
        """``GET /v1/models/{model_id}``: configs, step and metrics of its newest checkpoint."""
        return cast(Model, self._json("GET", f"/v1/models/{model_id}"))

    def score(
        self,
        model_id: str,
        inputs: Sequence[Any],
        method: ScoreMethod = "auto",
        seed: int = 0,
    ) -> Scores:
        """``POST /v1/models/{model_id}/log-prob`` with a JSON batch: points ``[[x, y], ...]``
        or images ``(B, C, H, W)`` (integers are 8-bit levels, fractions intensities)."""
        body = {"inputs": list(inputs), "method": method, "seed": seed}
        return cast(Scores, self._json("POST", f"/v1/models/{model_id}/log-prob", json=body))

    def score_array(
        self,
        model_id: str,
        inputs: np.ndarray,
        method: ScoreMethod = "auto",
        seed: int = 0,
    ) -> ScoreArrays:
        """``POST /v1/models/{model_id}/log-prob`` with ``.npy`` bodies both ways: ``inputs``
        (points (B, D) as floats, images (B, C, H, W) as uint8 levels or float intensities)
        sent as ``application/x-npy``, the answer's arrays read from the ``.npy`` records the
        server returns and its other fields from the ``X-Efnf-*`` headers. Faster than
        :meth:`score` for large batches: no JSON either way."""
        response = self.request(
            "POST",
            f"/v1/models/{model_id}/log-prob",
            params={"method": method, "seed": seed},
            content=_npy(np.asarray(inputs)),
            headers={"Content-Type": NPY_MEDIA, "Accept": NPY_MEDIA},
        )
        records = _from_npy(response.content)
        names = records.dtype.names or ()
        headers = response.headers
        return ScoreArrays(
            model_id=headers["x-efnf-model-id"],
            checkpoint_id=headers["x-efnf-checkpoint-id"],
            step=int(headers["x-efnf-step"]),
            method=headers["x-efnf-method"],
            count=len(records),
            log_prob=records["log_prob"].copy(),
            stderr=records["stderr"].copy() if "stderr" in names else None,
            bits_per_dim=records["bits_per_dim"].copy() if "bits_per_dim" in names else None,
            lower_bound=headers["x-efnf-lower-bound"] == "true",
        )

    def score_pngs(
        self,
        model_id: str,
        images: Sequence[str | Path | tuple[str, bytes]],
        method: ScoreMethod = "auto",
        seed: int = 0,
    ) -> Scores:
        """``POST /v1/models/{model_id}/log-prob`` with PNG files (paths or (name, bytes))."""
        files = []
        for image in images:
            if isinstance(image, tuple):
                name, content = image
            else:
                name, content = Path(image).name, Path(image).read_bytes()
            files.append(("files", (name, content, "image/png")))
        data = {"method": method, "seed": str(seed)}
        path = f"/v1/models/{model_id}/log-prob"
        return cast(Scores, self._json("POST", path, files=files, data=data))

    def _samples(
        self, model_id: str, n: int, seed: int, temperature: float, fmt: str
    ) -> httpx.Response:
        body = {"n": n, "seed": seed, "temperature": temperature, "format": fmt}
        return self.request("POST", f"/v1/models/{model_id}/samples", json=body)

    def sample(
        self, model_id: str, n: int = 16, seed: int = 0, temperature: float = 1.0
    ) -> Samples:
        """``POST /v1/models/{model_id}/samples`` as JSON arrays."""
        return cast(Samples, self._samples(model_id, n, seed, temperature, "json").json())

    def sample_npy(
        self, model_id: str, n: int = 16, seed: int = 0, temperature: float = 1.0
    ) -> bytes:
        """The same samples as a NumPy ``.npy`` file."""
        return self._samples(model_id, n, seed, temperature, "npy").content

    def sample_array(
        self, model_id: str, n: int = 16, seed: int = 0, temperature: float = 1.0
    ) -> np.ndarray:
        """The same samples as a NumPy array (sent as ``.npy``, no JSON)."""
        return _from_npy(self.sample_npy(model_id, n, seed, temperature))

    def sample_png(
        self, model_id: str, n: int = 16, seed: int = 0, temperature: float = 1.0
    ) -> bytes:
        """The same samples as a PNG: an image grid, or a scatter plot of points."""
        return self._samples(model_id, n, seed, temperature, "png").content

    def download_checkpoint(self, model_id: str) -> bytes:
        """``GET /v1/models/{model_id}/checkpoint``: one safetensors file (configs in its
        metadata), checked against the SHA-256 the server sends as its ETag."""
        response = self.request("GET", f"/v1/models/{model_id}/checkpoint")
        expected = response.headers.get("etag", "").strip('"')
        actual = hashlib.sha256(response.content).hexdigest()
        if expected and expected != actual:
            raise EfnfError(
                f"checkpoint of {model_id} arrived damaged: sha256 {actual}, server says "
                f"{expected}",
                response.status_code,
                "model_id",
            )
        return response.content
