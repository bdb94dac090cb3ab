"""The synthetic ``shapes`` dataset: coloured shapes on textured, noisy backgrounds, written in VOC layout.

It needs no download, is quick to learn and goes through the real VOC reader. Colour is not tied to class,
objects overlap and are cut by the image border, and an object stays only while at least ``MIN_VISIBLE`` of it
is visible, so every drawn shape is labelled and every label can be seen. Each image is drawn from its own
seed ``(seed, split, index)``: the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torchvision.io import write_jpeg

from ..errors import SSDError
from .voc import write_voc_annotation

logger = logging.getLogger(__name__)

SHAPES_CLASSES = ("circle", "square", "triangle", "star", "ellipse", "cross")
GENERATOR_VERSION = 2  # bump when the drawing changes, so that old data on disk is regenerated
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}  # disjoint seed streams per split
FOLDER = "SHAPES"
MIN_VISIBLE = 0.7  # share of an object that must stay visible (inside the image and not covered)
MIN_CONTRAST = 80.0  # RGB distance between an object's colour and what lies under it
SIZE_RANGE = (0.1, 0.6)  # object diameter as a share of the image side, drawn log-uniformly
MAX_OBJECTS = 6
NOISE_RANGE = (1.0, 8.0)  # amplitude of the grey sensor noise, drawn per image
CHUNK = 50  # images per job of the worker pool


def generate_shapes(
    root: str | os.PathLike[str],
    *,
    num_train: int = 2000,
    num_val: int = 200,
    num_test: int = 500,
    image_size: int = 256,
    seed: int = 0,
    num_workers: int | None = None,
    size_range: tuple[float, float] = SIZE_RANGE,
    stretch: int = 1,
) -> Path:
    """Write the dataset under ``root/SHAPES`` and its data YAML ``root/shapes.yaml``; return the YAML's path.

    Does nothing if the data already exists with the same parameters (``SHAPES/manifest.json``, written last).
    ``num_workers`` processes draw the images (default: up to 8, one per CPU core). Variants for other box
    statistics: ``size_range`` (object diameter as a share of the image side) and ``stretch`` (every shape drawn
    that many times wider than high, for long thin objects).
    """
    counts = {"train": num_train, "val": num_val, "test": num_test}
    if image_size < 32 or seed < 0 or min(counts.values()) < 0 or not any(counts.values()):
        raise SSDError("generate_shapes needs image_size >= 32, seed >= 0 and some images (counts >= 0)")
    if not 0 < size_range[0] <= size_range[1] <= 1 or stretch < 1:
        raise SSDError(f"generate_shapes needs 0 < size_range <= 1 and stretch >= 1, got {size_range}, {stretch}")
    root = Path(root)
    folder = root / FOLDER
    yaml_path = root / "shapes.yaml"
    manifest = folder / "manifest.json"
    params = {"version": GENERATOR_VERSION, **{f"num_{k}": v for k, v in counts.items()},
              "image_size": image_size, "seed": seed}  # fmt: skip
    if tuple(size_range) != SIZE_RANGE or stretch != 1:  # the default dataset keeps its manifest
        params.update(size_range=list(size_range), stretch=stretch)
    if yaml_path.is_file() and _read_manifest(manifest) == params:
        return yaml_path

    start = time.perf_counter()
    manifest.unlink(missing_ok=True)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder), split, lo, min(lo + CHUNK, n), image_size, seed, tuple(size_range), stretch)
            for split, n in counts.items() for lo in range(0, n, CHUNK)]  # fmt: skip
    workers = min(num_workers if num_workers is not None else min(8, os.cpu_count() or 1), len(jobs))
    if workers <= 1:
        for job in jobs:
            _write_images(job)
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            pool.map(_write_images, jobs, chunksize=1)

    splits = {}
    for split, n in counts.items():
        if n:
            ids = "".join(f"{_image_id(split, i)}\n" for i in range(n))
            (folder / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
            splits[split] = f"{FOLDER}/{split}"
    config = {"format": "voc", "path": ".", "names": list(SHAPES_CLASSES), **splits}
    yaml_path.write_text(f"# written by ssd.data.shapes.generate_shapes (seed {seed})\n"
                         + yaml.safe_dump(config, sort_keys=False, default_flow_style=None))  # fmt: skip
    manifest.write_text(json.dumps(params))
    logger.info("shapes: wrote %d images to %s in %.1f s", sum(counts.values()), folder, time.perf_counter() - start)
    return yaml_path


def _read_manifest(path: Path) -> dict | None:
    """The parameters the data on disk was generated with, or None if there is no complete dataset."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _image_id(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _write_images(job: tuple[str, str, int, int, int, int, tuple[float, float], int]) -> None:
    """Draw and write images ``lo..hi-1`` of one split: JPEG and VOC XML."""
    folder, split, lo, hi, size, seed, size_range, stretch = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the drawing is many tiny tensor ops: more threads only spin
    try:
        for index in range(lo, hi):
            image_id = _image_id(split, index)
            rng = np.random.default_rng([seed, SPLIT_STREAMS[split], index])
            image, boxes_xyxy, classes = render_image(rng, size, size_range, stretch)
            write_jpeg(torch.from_numpy(image), os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), quality=90)
            xml_path = os.path.join(folder, "Annotations", f"{image_id}.xml")
            names = [SHAPES_CLASSES[c] for c in classes]
            write_voc_annotation(xml_path, f"{image_id}.jpg", size, size, boxes_xyxy, names)
    finally:
        torch.set_num_threads(threads)


def render_image(
    rng: np.random.Generator, size: int, size_range: tuple[float, float] = SIZE_RANGE, stretch: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image ``ndarray[3, H, W]`` uint8 RGB, its boxes ``ndarray[N, 4]`` xyxy px and classes ``ndarray[N]``;
    object diameters drawn log-uniformly in ``size_range`` (shares of the side), shapes ``stretch`` times wider.

    Objects are drawn in order, later ones over earlier ones; a candidate is rejected when less than
    ``MIN_VISIBLE`` of it would fall inside the image or when it would hide more than that of an earlier object.
    """
    canvas = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)  # index of the object drawn on top of each pixel
    full_area: list[int] = []
    visible = np.zeros(0, dtype=np.int64)
    colours: list[np.ndarray] = []
    boxes: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(12 * wanted):
        if len(classes) == wanted:
            break
        cls = int(rng.integers(len(SHAPES_CLASSES)))
        diameter = size * math.exp(rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
        cx, cy = rng.uniform(0, size, 2)
        mask, x0, y0 = shape_mask(SHAPES_CLASSES[cls], diameter, cx, cy, rng)
        if stretch > 1:  # widen about the centre
            mask, x0 = np.repeat(mask, stretch, axis=1), int(round(cx - stretch * (cx - x0)))
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + mask.shape[1], size), min(y0 + mask.shape[0], size)
        area = int(mask.sum())
        if ix1 <= ix0 or iy1 <= iy0 or area < 20:
            continue
        inside = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]  # the part of the mask within the image
        inside_area = int(inside.sum())
        if inside_area < MIN_VISIBLE * area:
            continue
        under = owner[iy0:iy1, ix0:ix1][inside]
        covered = np.bincount(under[under >= 0], minlength=len(classes))
        if np.any(visible - covered < MIN_VISIBLE * np.array(full_area)):
            continue
        region = canvas[:, iy0:iy1, ix0:ix1]  # a view: drawing into it draws on the canvas
        under_mean = (region * inside).sum(axis=(1, 2)) / inside_area
        avoid = [under_mean] + [colours[j] for j in np.flatnonzero(covered)]
        colour = _contrasting_colour(rng, avoid)
        if colour is None:
            continue
        shading = _shading(rng, ix0, iy0, ix1, iy1, cx, cy, diameter)
        np.copyto(region, colour[:, None, None] * shading, where=inside)
        owner[iy0:iy1, ix0:ix1][inside] = len(classes)
        visible = np.append(visible - covered, inside_area)
        full_area.append(area)
        colours.append(colour)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)  # the whole shape, then clipped
        boxes.append(tuple(min(max(int(v), 0), size) for v in box))  # type: ignore[misc]
        classes.append(cls)
    canvas += (rng.random((size, size), dtype=np.float32) - 0.5) * rng.uniform(*NOISE_RANGE)  # sensor noise, grey
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    return image, np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(classes, dtype=np.int64)


def shape_mask(
    name: str, diameter: float, cx: float, cy: float, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """Pixels covered by a randomly rotated shape of about ``diameter`` centred at ``(cx, cy)``.

    Returns a bool mask ``[n, n]`` and the image coordinates ``(x0, y0)`` of its top-left pixel (maybe negative).
    """
    r = diameter / 2
    x0, y0 = math.floor(cx - r) - 1, math.floor(cy - r) - 1
    n = math.ceil(diameter) + 3
    u = (x0 + np.arange(n, dtype=np.float32) + 0.5 - cx)[None, :]  # pixel centres relative to the shape centre
    v = (y0 + np.arange(n, dtype=np.float32) + 0.5 - cy)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    ur, vr = u * c + v * s, v * c - u * s  # rotated coordinates
    if name == "circle":
        mask = u * u + v * v <= r * r
    elif name == "ellipse":
        minor = r * rng.uniform(0.35, 0.6)
        mask = (ur / r) ** 2 + (vr / minor) ** 2 <= 1
    elif name == "square":
        mask = np.maximum(abs(ur), abs(vr)) <= 0.7 * r
    elif name == "triangle":  # equilateral: the edge opposite vertex k lies at distance r/2 from the centre
        mask = np.ones((n, n), dtype=bool)
        for k in range(3):
            theta = angle + 2 * math.pi * k / 3
            mask &= -(u * math.cos(theta) + v * math.sin(theta)) <= r / 2
    elif name == "star":  # five points; fold the angle into one half-point sector and test against its edge
        inner = r * rng.uniform(0.38, 0.5)
        sector = 2 * math.pi / 5
        phi = np.mod(np.arctan2(vr, ur), sector)
        phi = np.minimum(phi, sector - phi)
        rho = np.hypot(ur, vr)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        bx, by = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
        mask = (bx - r) * py - by * (px - r) >= 0
    elif name == "cross":
        half_width = r * rng.uniform(0.22, 0.32)
        mask = ((abs(ur) <= r) & (abs(vr) <= half_width)) | ((abs(ur) <= half_width) & (abs(vr) <= r))
    else:
        raise ValueError(f"unknown shape {name!r}")
    return mask, x0, y0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background ``ndarray[3, H, W]`` float32: smooth colour blobs, mottled noise and a grating."""
    grid = int(rng.integers(2, 7))
    blobs = rng.uniform(40, 215, (3, 1, 1)) + rng.uniform(-35, 35, (3, grid, grid))
    mottle = rng.standard_normal((3, size // 8, size // 8)) * rng.uniform(2, 8)
    theta, freq, phase = rng.uniform(0, math.pi), rng.uniform(2, 24) / size, rng.uniform(0, 2 * math.pi)
    xs, ys = np.arange(size, dtype=np.float32)[None, :], np.arange(size, dtype=np.float32)[:, None]
    grating = np.sin(2 * math.pi * freq * (xs * math.cos(theta) + ys * math.sin(theta)) + phase)  # [H, W]
    amplitude = rng.uniform(0, 15, (3, 1, 1)).astype(np.float32)
    return _upsample(blobs, size) + _upsample(mottle, size) + grating * amplitude


def _upsample(values: np.ndarray, size: int) -> np.ndarray:
    """Resize ``ndarray[3, h, w]`` to ``[3, size, size]`` float32 by linear interpolation (pixel centres aligned).

    Two small matrix products in torch (numpy's BLAS threads could not be limited to one per worker process).
    """
    rows, cols = _interpolation_matrix(values.shape[1], size), _interpolation_matrix(values.shape[2], size)
    return (rows @ torch.from_numpy(values.astype(np.float32)) @ cols.T).numpy()


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n: int, size: int) -> torch.Tensor:
    """``Tensor[size, n]``: the weights of ``n >= 2`` samples for each of ``size`` outputs."""
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.minimum(pos.astype(np.int64), n - 2)
    frac = pos - lo
    weights = np.zeros((size, n), dtype=np.float32)
    weights[np.arange(size), lo] = 1 - frac
    weights[np.arange(size), lo + 1] = frac
    return torch.from_numpy(weights)


def _contrasting_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray | None:
    """A random RGB colour at least ``MIN_CONTRAST`` from every colour in ``avoid``, or None after a few tries."""
    for _ in range(8):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if min(float(np.linalg.norm(colour - a)) for a in avoid) >= MIN_CONTRAST:
            return colour
    return None


def _shading(
    rng: np.random.Generator, ix0: int, iy0: int, ix1: int, iy1: int, cx: float, cy: float, diameter: float
) -> np.ndarray:
    """A linear brightness ramp (0.75..1.25 across the object) over the image region ``[iy0:iy1, ix0:ix1]``."""
    gain, direction = rng.uniform(-0.25, 0.25), rng.uniform(0, 2 * math.pi)
    xs = np.arange(ix0, ix1, dtype=np.float32)[None, :] + 0.5 - cx
    ys = np.arange(iy0, iy1, dtype=np.float32)[:, None] + 0.5 - cy
    return 1 + gain * (xs * math.cos(direction) + ys * math.sin(direction)) / (diameter / 2)
