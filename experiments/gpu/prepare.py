r"""Converts Rotation MNIST and CIFAR-10 into ``.npz`` files the service accepts as uploads.

    python -m experiments.gpu.prepare rotation-mnist \
        mnist_all_rotation_normalized_float_train_valid.amat rotmnist-train.npz
    python -m experiments.gpu.prepare cifar10 cifar-10-binary.tar.gz cifar10-d4.npz --augment D4

Both read formats that need no unpickling: the ``.amat`` text files of Larochelle et al.'s
MNIST-rot (one image per line: 784 floats in [0, 1], then the label) and the *binary* CIFAR-10
archive (records of 1 label byte and 3,072 channel-major pixel bytes). The output holds one uint8
array ``x`` of shape (N, C, H, W); labels are dropped, since the flows model p(x).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

import numpy as np

from flows.data.images import GRID_GROUPS, apply_grid_element

__all__ = ["augment_by_group", "read_cifar10_binary", "read_rotation_mnist_amat"]

MNIST_SIDE = 28
CIFAR_SHAPE = (3, 32, 32)
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_TRAIN_MEMBERS = tuple(f"data_batch_{index}.bin" for index in range(1, 6))


def read_rotation_mnist_amat(text: str) -> np.ndarray:
    """Parses MNIST-rot ``.amat`` text into uint8 images (N, 1, 28, 28).

    The files store each image column by column (the usual loaders transpose them back, and so
    does this one; a transpose is a grid reflection, so it moves nothing out of the data set's
    rotation symmetry); values in [0, 1] become levels ``round(255 v)``.

    Raises:
        ValueError: a line does not hold 784 pixel values and a label, or a value is outside
            [0, 1].
    """
    values = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    if values.shape[1] != MNIST_SIDE * MNIST_SIDE + 1:
        raise ValueError(
            f"MNIST-rot lines hold {MNIST_SIDE * MNIST_SIDE} pixels and a label "
            f"({MNIST_SIDE * MNIST_SIDE + 1} values); this file has {values.shape[1]}"
        )
    pixels = values[:, :-1]
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise ValueError(
            f"MNIST-rot pixel values lie in [0, 1]; this file has values from {pixels.min()} "
            f"to {pixels.max()}"
        )
    images = pixels.reshape(-1, MNIST_SIDE, MNIST_SIDE).transpose(0, 2, 1)
    return np.rint(images * 255.0).astype(np.uint8)[:, None]


def read_cifar10_binary(
    archive: bytes, members: tuple[str, ...] = CIFAR_TRAIN_MEMBERS
) -> np.ndarray:
    """Reads CIFAR-10's binary archive (``cifar-10-binary.tar.gz``) into uint8 (N, 3, 32, 32).

    Raises:
        ValueError: a member is missing or its size is not a whole number of records.
    """
    images = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        by_name = {
            Path(member.name).name: member for member in tar.getmembers() if member.isfile()
        }
        for name in members:
            if name not in by_name:
                raise ValueError(
                    f"the archive has no {name}; expected the binary CIFAR-10 release "
                    f"(cifar-10-binary.tar.gz) with {', '.join(members)}"
                )
            raw = tar.extractfile(by_name[name]).read()  # type: ignore[union-attr]
            if len(raw) % CIFAR_RECORD:
                raise ValueError(
                    f"{name} is {len(raw)} bytes, not a multiple of the {CIFAR_RECORD}-byte record"
                )
            records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
            images.append(records[:, 1:].reshape(-1, *CIFAR_SHAPE))
    return np.concatenate(images)


def augment_by_group(images: np.ndarray, group: str, seed: int) -> np.ndarray:
    """Moves each image by a uniformly random element of an exact grid group (``GRID_GROUPS``).

    This builds the paper's "augmented CIFAR-10": a data set whose distribution is invariant to
    the group, on which equivariant and augmented baselines are compared.
    """
    if group not in GRID_GROUPS:
        raise ValueError(
            f"group {group!r} is not an exact grid group; use one of {sorted(GRID_GROUPS)}"
        )
    elements = GRID_GROUPS[group]
    choice = np.random.default_rng(seed).integers(0, len(elements), size=len(images))
    out = np.empty_like(images)
    for index, (quarter_turns, flip) in enumerate(elements):
        mask = choice == index
        out[mask] = apply_grid_element(images[mask], quarter_turns, flip)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.gpu.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", choices=("rotation-mnist", "cifar10"))
    parser.add_argument("source", type=Path, help=".amat file or cifar-10-binary.tar.gz")
    parser.add_argument("output", type=Path, help="the .npz to write")
    parser.add_argument(
        "--augment",
        choices=sorted(GRID_GROUPS),
        default=None,
        help="move each image by a random element of this group",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.dataset == "rotation-mnist":
        images = read_rotation_mnist_amat(args.source.read_text(encoding="ascii"))
    else:
        images = read_cifar10_binary(args.source.read_bytes())
    if args.augment is not None:
        images = augment_by_group(images, args.augment, args.seed)
    np.savez_compressed(args.output, x=images)
    print(f"{args.output}: {images.shape[0]} images of shape {list(images.shape[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
