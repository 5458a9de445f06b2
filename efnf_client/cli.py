"""``efnf``: the command line of the efnf service, on top of :class:`efnf_client.Client`.

    efnf datasets upload|builtin|list|preview|delete
    efnf jobs submit|list|show|watch|cancel|delete
    efnf models list|score|sample|download

The server's URL and API key come from ``--url`` / ``--api-key``, else ``EFNF_URL`` /
``EFNF_API_KEY``, else the config file (see ``efnf_client.config``). A request the server
refuses prints its message and the offending field on stderr and exits with status 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from efnf_client.client import Client, EfnfError
from efnf_client.config import ConfigError, resolve_connection

F = TypeVar("F", bound=Callable[..., Any])
POINT_SUFFIXES = (".npy", ".npz", ".csv", ".json")
TABLE_BOX = box.SIMPLE_HEAD

out = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160, highlight=False)


def _client(context: click.Context) -> Client:
    return context.find_object(Client)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")(
        function
    )


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return str(timedelta(seconds=round(seconds)))


def _format_number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


class EfnfGroup(click.Group):
    """Turns the client's errors into one readable line on stderr and exit status 1."""

    def invoke(self, context: click.Context) -> Any:
        try:
            return super().invoke(context)
        except EfnfError as error:
            err.print(f"[bold red]error:[/] {error.message}", markup=True, highlight=False)
            if error.field:
                err.print(f"field: {error.field}")
            if error.status_code is not None:
                err.print(f"status: HTTP {error.status_code}")
            context.exit(1)
        except ConfigError as error:
            err.print(f"[bold red]error:[/] {error}")
            context.exit(1)


@click.group(cls=EfnfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="Server URL (else EFNF_URL, the config file, http://127.0.0.1:8000).")
@click.option("--api-key", help="API key (else EFNF_API_KEY or the config file).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for a reply.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Retries of unreachable connections and of GETs answered 502/503/504.",
)
@click.version_option("0.1.0", prog_name="efnf")
@click.pass_context
def cli(
    context: click.Context, url: str | None, api_key: str | None, timeout: float, retries: int
) -> None:
    """Train, watch and use equivariant normalizing flows on an efnf server."""
    connection = resolve_connection(url, api_key)
    context.obj = context.with_resource(
        Client(connection.url, connection.api_key, timeout=timeout, retries=retries)
    )


# Data sets --------------------------------------------------------------------------------


@cli.group()
def datasets() -> None:
    """Upload, generate, list and preview data sets."""


def _dataset_table(items: Sequence[dict[str, Any]], total: int | None = None) -> None:
    title = None if total is None else f"{len(items)} of {total} data set(s)"
    table = Table("id", "name", "kind", "shape", "count", "created", title=title, box=TABLE_BOX)
    for item in items:
        shape = "x".join(str(side) for side in item["shape"])
        created = item["created_at"][:19].replace("T", " ")
        table.add_row(item["id"], item["name"], item["kind"], shape, str(item["count"]), created)
    out.print(table)


def _created(dataset: dict[str, Any]) -> None:
    out.print(
        f"created {dataset['id']} ({dataset['name']!r}): {dataset['count']} {dataset['kind']} "
        f"of shape {dataset['shape']}"
    )


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Default: the file name.")
@json_option
@click.pass_context
def datasets_upload(context: click.Context, file: Path, name: str | None, as_json: bool) -> None:
    """Upload FILE: .npy, .npz or .csv of points, or a .zip of PNG images."""
    dataset = _client(context).upload_dataset(file, name=name)
    _print_json(dataset) if as_json else _created(dataset)


@datasets.command("builtin")
@click.argument("name")
@click.option("-n", "--n", "count", type=click.IntRange(min=1), help="Number of items.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@click.pass_context
def datasets_builtin(
    context: click.Context, name: str, count: int | None, seed: int, as_json: bool
) -> None:
    """Generate the built-in data set NAME (eight_gaussians, rings, digits, ...)."""
    dataset = _client(context).create_builtin_dataset(name, n=count, seed=seed)
    _print_json(dataset) if as_json else _created(dataset)


@datasets.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@click.pass_context
def datasets_list(context: click.Context, limit: int, offset: int, as_json: bool) -> None:
    """List your data sets, newest first."""
    page = _client(context).list_datasets(limit=limit, offset=offset)
    _print_json(page) if as_json else _dataset_table(page["items"], page["total"])


@datasets.command("preview")
@click.argument("dataset_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG file to write (default: DATASET_ID.png).",
)
@click.pass_context
def datasets_preview(context: click.Context, dataset_id: str, output: Path | None) -> None:
    """Save a picture of the data: an image grid or a scatter plot (PNG)."""
    png = _client(context).dataset_preview_png(dataset_id)
    output = output or Path(f"{dataset_id}.png")
    output.write_bytes(png)
    out.print(f"wrote {output} ({len(png)} bytes)")


@datasets.command("delete")
@click.argument("dataset_id")
@click.pass_context
def datasets_delete(context: click.Context, dataset_id: str) -> None:
    """Delete a data set (refused while a queued or running job uses it)."""
    _client(context).delete_dataset(dataset_id)
    out.print(f"deleted {dataset_id}")


# Jobs -------------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """Submit training jobs, watch them, cancel or delete them."""


def _json_object(value: str | None, option: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file.json``."""
    if not value:
        return {}
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise click.BadParameter(str(error), param_hint=option) from error
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from error
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return parsed


def _loss(job: dict[str, Any]) -> float | None:
    """The loss to show: the recent steps' while running, else the last metric step's."""
    live = job.get("live_loss")
    return live if live is not None else (job.get("latest_metrics") or {}).get("loss")


def _job_line(job: dict[str, Any]) -> str:
    parts = [
        f"{job['id']} {job['state']}",
        f"step {job['step']}/{job['total_steps']} ({job['progress']:.1f}%)",
        f"loss {_format_number(_loss(job))}",
        f"ETA {_format_seconds(job.get('eta_seconds'))}",
    ]
    if job.get("steps_per_second"):
        parts.append(f"{job['steps_per_second']:.1f} steps/s")
    return "  ".join(parts)


def _jobs_table(items: Sequence[dict[str, Any]], total: int | None = None) -> None:
    title = None if total is None else f"{len(items)} of {total} job(s)"
    table = Table(
        "id", "state", "step", "progress", "loss", "ETA", "dataset", title=title, box=TABLE_BOX
    )
    for job in items:
        loss = _loss(job)
        table.add_row(
            job["id"],
            job["state"],
            f"{job['step']}/{job['total_steps']}",
            f"{job['progress']:.1f}%",
            _format_number(loss),
            _format_seconds(job.get("eta_seconds")),
            job.get("dataset_id") or "-",
        )
    out.print(table)


@jobs.command("submit")
@click.argument("dataset_id")
@click.option(
    "--flow", "flow_json", help="FlowConfig as JSON or @file.json, e.g. '{\"depth\": 4}'."
)
@click.option("--training", "training_json", help="TrainConfig as JSON or @file.json.")
@click.option("--family", help="Flow family: residual, coupling, iaf, linear, mixed.")
@click.option("--group", help="Symmetry group: trivial, C<N>, D<N>, SO2, O2.")
@click.option("--depth", type=click.IntRange(min=1), help="Number of flow blocks.")
@click.option("--width", type=click.IntRange(min=1), help="Hidden width.")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", type=click.IntRange(min=0), help="Training seed.")
@click.option("--watch", is_flag=True, help="Then watch it until it finishes.")
@json_option
@click.pass_context
def jobs_submit(
    context: click.Context,
    dataset_id: str,
    flow_json: str | None,
    training_json: str | None,
    family: str | None,
    group: str | None,
    depth: int | None,
    width: int | None,
    steps: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    seed: int | None,
    watch: bool,
    as_json: bool,
) -> None:
    """Train a flow on DATASET_ID. The options override the --flow / --training JSON; the
    flow's data_shape defaults to the data set's item shape."""
    client = _client(context)
    flow = _json_object(flow_json, "--flow")
    training = _json_object(training_json, "--training")
    for key, value in (("family", family), ("group", group), ("depth", depth), ("width", width)):
        if value is not None:
            flow[key] = value
    for key, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("learning_rate", learning_rate),
        ("seed", seed),
    ):
        if value is not None:
            training[key] = value
    if "data_shape" not in flow:
        flow["data_shape"] = client.get_dataset(dataset_id)["shape"]
    job = client.submit_job(dataset_id, flow, training)
    if as_json:
        _print_json(job)
    else:
        out.print(f"submitted {job['id']} ({job['state']}, {job['total_steps']} steps)")
    if watch:
        context.exit(_watch(client, job["id"], interval_s=1.0))


@jobs.command("list")
@click.option(
    "--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"])
)
@click.option("--dataset", "dataset_id", help="Only jobs of this data set.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@click.pass_context
def jobs_list(
    context: click.Context,
    state: str | None,
    dataset_id: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List your jobs, newest first."""
    page = _client(context).list_jobs(state, dataset_id, limit=limit, offset=offset)
    _print_json(page) if as_json else _jobs_table(page["items"], page["total"])


@jobs.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def jobs_show(context: click.Context, job_id: str, as_json: bool) -> None:
    """One job: state, progress, ETA, latest metrics, error."""
    job = _client(context).get_job(job_id)
    if as_json:
        _print_json(job)
        return
    out.print(_job_line(job))
    for key, value in (job.get("latest_metrics") or {}).items():
        out.print(f"  {key}: {_format_number(value, 6)}")
    if job.get("error"):
        out.print(f"  error: {job['error']}")


def _watch(client: Client, job_id: str, interval_s: float) -> int:
    """Follows the job until it finishes; 0 if it succeeded, else 1."""
    job = client.get_job(job_id)
    if out.is_terminal:
        job = _watch_with_bar(client, job, interval_s)
    else:
        # Logs and pipes: one line whenever the step or the state moves.
        seen = None
        for job in client.follow_job(job_id, interval_s):
            key = (job["state"], job["step"])
            if key != seen:
                seen = key
                out.print(_job_line(job))
    if job["state"] == "succeeded":
        loss = (job.get("latest_metrics") or {}).get("loss")
        out.print(f"{job_id} succeeded at step {job['step']} (loss {_format_number(loss)})")
        return 0
    reason = f": {job['error']}" if job.get("error") else ""
    err.print(f"{job_id} {job['state']} at step {job['step']}{reason}")
    return 1


def _watch_with_bar(client: Client, first: dict[str, Any], interval_s: float) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[speed]}"),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(
            f"{first['id']} {first['state']}",
            total=first["total_steps"],
            loss="-",
            eta="-",
            speed="",
        )
        job = first
        for job in client.follow_job(first["id"], interval_s):
            speed = job.get("steps_per_second")
            progress.update(
                task,
                completed=job["step"],
                description=f"{job['id']} {job['state']}",
                loss=_format_number(_loss(job)),
                eta=_format_seconds(job.get("eta_seconds")),
                speed=f"{speed:.1f} steps/s" if speed else "",
            )
    return job


@jobs.command("watch")
@click.argument("job_id")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.pass_context
def jobs_watch(context: click.Context, job_id: str, interval: float) -> None:
    """Draw a progress bar with the live loss and ETA until the job finishes.

    Exits 0 if it succeeded, 1 if it failed or was cancelled (with the reason). Ctrl-C stops
    watching; the job goes on."""
    try:
        context.exit(_watch(_client(context), job_id, interval))
    except KeyboardInterrupt:
        err.print(f"stopped watching; {job_id} goes on (efnf jobs cancel {job_id} stops it)")
        context.exit(130)


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(context: click.Context, job_id: str) -> None:
    """Cancel a queued job now, or ask the worker to stop a running one (it checkpoints)."""
    job = _client(context).cancel_job(job_id)
    done = "cancelled" if job["state"] == "cancelled" else "cancel requested"
    out.print(f"{job_id}: {done} at step {job['step']}")


@jobs.command("delete")
@click.argument("job_id")
@click.pass_context
def jobs_delete(context: click.Context, job_id: str) -> None:
    """Delete a finished job with its checkpoints (its model) and metrics."""
    _client(context).delete_job(job_id)
    out.print(f"deleted {job_id}")


# Models -----------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """List models, score data, draw samples, download weights."""


@models.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@click.pass_context
def models_list(context: click.Context, limit: int, offset: int, as_json: bool) -> None:
    """List your models (succeeded jobs), newest first."""
    page = _client(context).list_models(limit=limit, offset=offset)
    if as_json:
        _print_json(page)
        return
    table = Table(
        "id",
        "kind",
        "shape",
        "group",
        "family",
        "step",
        "metrics",
        title=f"{len(page['items'])} of {page['total']} model(s)",
        box=TABLE_BOX,
    )
    for model in page["items"]:
        shown = {k: v for k, v in model["metrics"].items() if k.startswith(("val_", "nll", "bpd"))}
        table.add_row(
            model["id"],
            model["kind"],
            "x".join(str(side) for side in model["data_shape"]),
            str(model["flow"].get("group")),
            str(model["flow"].get("family")),
            str(model["step"]),
            " ".join(f"{k}={_format_number(v)}" for k, v in shown.items()),
        )
    out.print(table)


def _read_points(path: Path) -> list[Any]:
    """Points from .npy / .npz (first array) / .csv (header optional) / .json."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            values = json.loads(path.read_text(encoding="utf-8"))
            return values["inputs"] if isinstance(values, dict) else values
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).tolist()
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return archive[archive.files[0]].tolist()
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2).tolist()
        except ValueError:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1).tolist()
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise click.BadParameter(f"{path}: {error}", param_hint="FILES") from error


def _item_label(item: Any, index: int) -> str:
    """A point as ``[x, y]``; anything larger (an image) by its index."""
    if isinstance(item, list) and len(item) <= 8 and all(isinstance(v, int | float) for v in item):
        return "[" + ", ".join(f"{value:g}" for value in item) + "]"
    return str(index)


@models.command("score")
@click.argument("model_id")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--method", type=click.Choice(["auto", "exact", "estimate"]), default="auto")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Estimator probes' seed.")
@json_option
@click.pass_context
def models_score(
    context: click.Context,
    model_id: str,
    files: tuple[Path, ...],
    method: str,
    seed: int,
    as_json: bool,
) -> None:
    """Score FILES under MODEL_ID: PNG images (one item each), or points in .npy, .npz,
    .csv or .json files. Prints log p (nats) per item, bits/dim for images, and the standard
    error when estimated."""
    client = _client(context)
    pngs = [path for path in files if path.suffix.lower() == ".png"]
    if pngs and len(pngs) != len(files):
        raise click.BadParameter("give either PNG images or point files, not both")
    if pngs:
        scores = client.score_pngs(model_id, pngs, method=method, seed=seed)  # type: ignore[arg-type]
        labels = [path.name for path in pngs]
    else:
        unknown = [path for path in files if path.suffix.lower() not in POINT_SUFFIXES]
        if unknown:
            raise click.BadParameter(f"{unknown[0]}: expected .png, {', '.join(POINT_SUFFIXES)}")
        inputs = [point for path in files for point in _read_points(path)]
        scores = client.score(model_id, inputs, method=method, seed=seed)  # type: ignore[arg-type]
        labels = [_item_label(item, index) for index, item in enumerate(inputs)]
    if as_json:
        _print_json(scores)
        return
    bound = " (lower bound)" if scores["lower_bound"] else ""
    columns = ["item", f"log p{bound}"]
    if scores["stderr"] is not None:
        columns.append("stderr")
    if scores["bits_per_dim"] is not None:
        columns.append("bits/dim")
    out.print(f"{model_id} at step {scores['step']}, {scores['method']} log-likelihood")
    table = Table(*columns, box=TABLE_BOX)
    for index, label in enumerate(labels):
        row = [label, f"{scores['log_prob'][index]:.4f}"]
        if scores["stderr"] is not None:
            row.append(f"{scores['stderr'][index]:.4f}")
        if scores["bits_per_dim"] is not None:
            row.append(f"{scores['bits_per_dim'][index]:.4f}")
        table.add_row(*row)
    out.print(table)
    out.print(
        f"mean log p: {float(np.mean(scores['log_prob'])):.4f} over {scores['count']} item(s)"
    )


@models.command("sample")
@click.argument("model_id")
@click.option("-n", "--n", "count", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .npy, .png (image grid or scatter) or .json file; default: JSON on stdout.",
)
@click.pass_context
def models_sample(
    context: click.Context,
    model_id: str,
    count: int,
    seed: int,
    temperature: float,
    output: Path | None,
) -> None:
    """Draw samples from MODEL_ID."""
    client = _client(context)
    suffix = output.suffix.lower() if output else ".json"
    if suffix == ".npy":
        content = client.sample_npy(model_id, count, seed, temperature)
    elif suffix == ".png":
        content = client.sample_png(model_id, count, seed, temperature)
    elif suffix == ".json":
        samples = client.sample(model_id, count, seed, temperature)
        if output is None:
            _print_json(samples)
            return
        content = json.dumps(samples).encode()
    else:
        raise click.BadParameter("expected a .npy, .png or .json file", param_hint="--output")
    assert output is not None
    output.write_bytes(content)
    out.print(f"wrote {count} sample(s) of {model_id} to {output} ({len(content)} bytes)")


@models.command("download")
@click.argument("model_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: MODEL_ID.safetensors).",
)
@click.pass_context
def models_download(context: click.Context, model_id: str, output: Path | None) -> None:
    """Download the weights as one safetensors file (configs in its metadata)."""
    client = _client(context)
    content = client.download_checkpoint(model_id)
    output = output or Path(f"{model_id}.safetensors")
    output.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    out.print(f"wrote {output} ({len(content)} bytes, sha256 {digest})")


def main() -> None:
    """The ``efnf`` console script."""
    cli(prog_name="efnf")
