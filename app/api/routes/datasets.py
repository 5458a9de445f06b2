"""``/v1/datasets``: upload or generate data sets, list, inspect, preview, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, File, Form, Response, UploadFile

from app.api.deps import OwnerDep, PageDep, SessionDep, SettingsDep
from app.api.errors import ApiError, not_found
from app.api.schemas import (
    BUILTIN_EXAMPLES,
    BuiltinDatasetIn,
    DatasetList,
    DatasetOut,
    ErrorOut,
)
from app.api.text import check_name
from app.core.db import crud
from app.core.db.blobs import array_to_npy, npy_to_array
from app.core.db.models import Dataset as DatasetRow
from app.core.settings import Settings
from app.inputs import read_upload
from app.limits import check_storage_quota
from app.previews import preview_png
from flows.data import BUILTIN_DATASETS, DataError, Dataset, load_builtin
from flows.errors import FileError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_CHUNK = 1024 * 1024
# The longest file name kept: "upload:<file name>" fits the source column (300 characters).
MAX_FILENAME_LENGTH = 255
ERRORS = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def _read_upload(file: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := file.file.read(UPLOAD_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413, f"file is larger than {limit} bytes (EFNF_MAX_UPLOAD_BYTES)", "file"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _store(
    session: SessionDep,
    settings: Settings,
    owner: str,
    dataset: Dataset,
    name: str,
    source: str,
    source_params: dict,
) -> DatasetRow:
    if dataset.count > settings.max_dataset_items:
        raise ApiError(
            422,
            f"data set has {dataset.count} items; at most {settings.max_dataset_items} are "
            "allowed (EFNF_MAX_DATASET_ITEMS)",
            "file",
        )
    array_blob = array_to_npy(dataset.array)
    check_storage_quota(
        crud.tenant_storage_bytes(session, owner),
        len(array_blob),
        "file" if source.startswith("upload") else "n",
        f"this data set of {len(array_blob)} bytes",
        settings,
    )
    row = crud.create_dataset(
        session,
        owner=owner,
        name=name,
        kind=dataset.kind,
        shape=list(dataset.shape),
        count=dataset.count,
        dtype=str(dataset.dtype),
        checksum=dataset.checksum(),
        source=source,
        source_params=source_params,
        array_blob=array_blob,
    )
    session.commit()
    return row


UPLOAD_EXAMPLE = {"file": "points.npy", "name": "my points"}


def _problem(error: DataError, filename: str) -> str:
    """The error without the upload's own name, which the message already starts with."""
    if isinstance(error, FileError) and error.filename == filename:
        return error.without_filename()
    return str(error)


def _check_names(filename: str, name: str | None) -> None:
    """The file name (the default name, and part of the source) and the name must be printable
    and fit their columns."""
    try:
        check_name(filename, "file name", max_length=MAX_FILENAME_LENGTH)
    except ValueError as error:
        raise ApiError(422, str(error), "file") from error
    try:
        check_name(filename if name is None else name, "name")
    except ValueError as error:
        hint = "; send a shorter name" if name is None else ""
        raise ApiError(422, f"{error}{hint}", "name") from error


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    responses=ERRORS,
    summary="Upload a data set",
    openapi_extra={
        "requestBody": {"content": {"multipart/form-data": {"example": UPLOAD_EXAMPLE}}}
    },
)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    file: Annotated[
        UploadFile, File(description=".npy, .npz or .csv of points, or a .zip of PNG images.")
    ],
    name: Annotated[
        str | None, Form(max_length=200, description="Default: the file name.")
    ] = None,
) -> DatasetOut:
    """Uploads a data set file; it is parsed, validated and stored as one normalised array.

    Points: a `.npy` or `.npz` array of shape (N, D), or a `.csv` of numbers (one row each).
    Images: a `.zip` of PNG files of one size (grayscale or RGB). Limits: file size
    (`EFNF_MAX_UPLOAD_BYTES`), items (`EFNF_MAX_DATASET_ITEMS`), image side, archive entries.
    """
    filename = file.filename or ""
    _check_names(filename, name)
    content = _read_upload(file, settings.max_upload_bytes)
    try:
        dataset = read_upload(content, filename, settings)
    except DataError as error:
        raise ApiError(422, f"file {filename!r}: {_problem(error, filename)}", "file") from error
    row = _store(session, settings, owner, dataset, name or filename, f"upload:{filename}", {})
    return DatasetOut.from_row(row)


@router.post(
    "/builtin",
    status_code=201,
    response_model=DatasetOut,
    responses=ERRORS,
    summary="Generate a built-in data set",
)
def create_builtin_dataset(
    body: Annotated[BuiltinDatasetIn, Body(openapi_examples=BUILTIN_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
) -> DatasetOut:
    """Generates one of the built-in data sets (toy 2-D densities, small image sets).

    The same name, `n` and `seed` give the same data; `n` defaults to the set's own size.
    """
    if body.name not in BUILTIN_DATASETS:
        raise ApiError(
            422,
            f"name {body.name!r} is not a built-in data set; choose one of "
            f"{sorted(BUILTIN_DATASETS)}",
            "name",
        )
    if body.n is not None and body.n > settings.max_builtin_items:
        raise ApiError(
            422,
            f"n {body.n} is above the limit {settings.max_builtin_items} (EFNF_MAX_BUILTIN_ITEMS)",
            "n",
        )
    try:
        dataset = load_builtin(body.name, n=body.n, seed=body.seed)
    except DataError as error:
        raise ApiError(422, str(error), "name") from error
    params = body.model_dump()
    row = _store(session, settings, owner, dataset, body.name, "builtin", params)
    return DatasetOut.from_row(row)


@router.get("", response_model=DatasetList, summary="List data sets")
def list_datasets(
    session: SessionDep,
    owner: OwnerDep,
    page: PageDep,
) -> DatasetList:
    """The tenant's data sets, newest first, one page (`limit` is capped at
    `EFNF_PAGE_SIZE_MAX`); `total` counts them all."""
    rows = crud.list_datasets(session, owner, page.limit, page.offset)
    return DatasetList(
        items=[DatasetOut.from_row(row) for row in rows],
        total=crud.count_datasets(session, owner),
        limit=page.limit,
        offset=page.offset,
    )


def _dataset_or_404(session: SessionDep, owner: str, dataset_id: str) -> DatasetRow:
    row = crud.get_dataset(session, owner, dataset_id)
    if row is None:
        raise not_found("data set", dataset_id, "dataset_id")
    return row


@router.get("/{dataset_id}", response_model=DatasetOut, responses=ERRORS, summary="Get a data set")
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetOut:
    """The data set's kind, item shape, count, checksum and where it came from."""
    return DatasetOut.from_row(_dataset_or_404(session, owner, dataset_id))


@router.delete("/{dataset_id}", status_code=204, responses=ERRORS, summary="Delete a data set")
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Deletes a data set; refused (409) while a queued or running job uses it."""
    if not crud.lock_dataset(session, owner, dataset_id):
        raise not_found("data set", dataset_id, "dataset_id")
    crud.delete_dataset(session, _dataset_or_404(session, owner, dataset_id))
    session.commit()
    return Response(status_code=204)


@router.get(
    "/{dataset_id}/preview.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **ERRORS},
    summary="Preview a data set as a picture",
)
def preview_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """A picture of the data: a grid of the first images, or a scatter plot of the points."""
    row = _dataset_or_404(session, owner, dataset_id)
    array = npy_to_array(crud.dataset_array_blob(session, row.id))
    return Response(preview_png(array, row.kind), media_type="image/png")
