"""Writers of a tiny detection dataset for the data tests: the same images and boxes in VOC, COCO and YOLO layouts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torchvision.io import encode_jpeg

from ssd.data.voc import write_voc_annotation

TINY_CLASSES = ["cat", "dog", "bird"]
COCO_CATEGORY_IDS = [1, 5, 90]  # non-contiguous, as in COCO


@dataclass
class TinyImage:
    """One image of the tiny dataset: boxes in internal xyxy pixels, labels 1..3."""

    name: str
    coco_id: int
    height: int
    width: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)


TINY_IMAGES = [
    TinyImage("img_a", 7, 48, 64, [(0, 0, 64, 48), (10, 5, 30, 25)], [1, 2], [False, False]),
    TinyImage("img_b", 3, 60, 40, [(5, 10, 20, 50), (20, 30, 40, 60), (1, 1, 9, 5)], [3, 1, 2], [False, True, False]),
    TinyImage("img_c", 12, 32, 32),
]


def write_jpeg_file(path: Path, height: int, width: int, seed: int = 0) -> None:
    """A random JPEG image of the given size."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def write_voc(root: Path, images: list[TinyImage] = TINY_IMAGES, year: str = "VOC2007", split: str = "train") -> Path:
    """The images in VOCdevkit layout under ``root/<year>``; returns the data YAML."""
    folder = root / year
    for k, img in enumerate(images):
        write_jpeg_file(folder / "JPEGImages" / f"{img.name}.jpg", img.height, img.width, seed=k)
        write_voc_annotation(
            folder / "Annotations" / f"{img.name}.xml",
            f"{img.name}.jpg",
            img.height,
            img.width,
            img.boxes,
            [TINY_CLASSES[label - 1] for label in img.labels],
            img.difficult or None,
        )
    split_file = folder / "ImageSets" / "Main" / f"{split}.txt"
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text("".join(f"{img.name}\n" for img in images))
    values = {"format": "voc", "path": ".", "names": TINY_CLASSES, "train": f"{year}/{split}"}
    return write_yaml(root / "data.yaml", values)


def coco_dict(images: list[TinyImage] = TINY_IMAGES) -> dict:
    """The instances JSON of the images, with category ids 1, 5, 90."""
    annotations = []
    for img in images:
        for box, label in zip(img.boxes, img.labels):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img.coco_id,
                    "iscrowd": 0,
                    "category_id": COCO_CATEGORY_IDS[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
            )
    return {
        "images": [
            {"id": i.coco_id, "file_name": f"{i.name}.jpg", "height": i.height, "width": i.width} for i in images
        ],
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in zip(COCO_CATEGORY_IDS, TINY_CLASSES)][::-1],  # any order
    }


def write_coco(root: Path, images: list[TinyImage] = TINY_IMAGES, data: dict | None = None) -> Path:
    """The images in ``root/train`` with ``root/annotations/train.json``; returns the data YAML."""
    for k, img in enumerate(images):
        write_jpeg_file(root / "train" / f"{img.name}.jpg", img.height, img.width, seed=k)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "train.json").write_text(json.dumps(coco_dict(images) if data is None else data))
    return write_yaml(
        root / "data.yaml",
        {"format": "coco", "path": ".", "train": {"images": "train", "annotations": "annotations/train.json"}},
    )


def write_yolo(root: Path, images: list[TinyImage] = TINY_IMAGES) -> Path:
    """The images in ``root/images/train`` with labels in ``root/labels/train`` (none for images without objects)."""
    for k, img in enumerate(images):
        write_jpeg_file(root / "images" / "train" / f"{img.name}.jpg", img.height, img.width, seed=k)
        if not img.boxes:
            continue
        lines = []
        for (x1, y1, x2, y2), label in zip(img.boxes, img.labels):
            cx, cy = (x1 + x2) / 2 / img.width, (y1 + y2) / 2 / img.height
            lines.append(f"{label - 1} {cx!r} {cy!r} {(x2 - x1) / img.width!r} {(y2 - y1) / img.height!r}\n")
        label_file = root / "labels" / "train" / f"{img.name}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(lines))
    return write_yaml(
        root / "data.yaml",
        {"format": "yolo", "path": ".", "names": dict(enumerate(TINY_CLASSES)), "train": "images/train"},
    )


def make_sample(image, boxes, labels, difficult, iscrowd, image_id=0, path="sample.png"):
    """A ``Sample`` built in memory, with defaults for the fields a test does not care about."""
    from ssd.data.dataset import Sample

    return Sample(image, boxes, labels, difficult, iscrowd, image_id, path)


# ---------------------------------------------------------------------------------------------- layouts of labelling tools
# Each writes the tiny dataset as the tool writes it, with the data YAML a user would write for it (no format:).


def write_labelimg(root: Path, images: list[TinyImage] = TINY_IMAGES, sibling: bool = False) -> Path:
    """A labelling tool's Pascal VOC output (LabelImg, CVAT's export): ``<name>.xml`` with continuous coordinates
    beside each image in ``root/train`` or, with ``sibling``, the XML files in ``root/train/annotations`` and the
    images in ``root/train/images``."""
    xml_dir = root / "train" / "annotations" if sibling else root / "train"
    image_dir = root / "train" / "images" if sibling else root / "train"
    for k, img in enumerate(images):
        write_jpeg_file(image_dir / f"{img.name}.jpg", img.height, img.width, seed=k)
        names = [TINY_CLASSES[label - 1] for label in img.labels]
        write_voc_annotation(xml_dir / f"{img.name}.xml", f"{img.name}.jpg", img.height, img.width, img.boxes,
                             names, img.difficult or None, one_based=False)  # fmt: skip
    split = "train/annotations" if sibling else "train"
    return write_yaml(root / "data.yaml", {"path": ".", "names": TINY_CLASSES, "train": split})


def write_roboflow_coco(root: Path, images: list[TinyImage] = TINY_IMAGES) -> Path:
    """Roboflow's COCO export: ``train/_annotations.coco.json`` beside the images, category 0 the project's
    supercategory entry that no annotation uses."""
    data = coco_dict(images)
    data["categories"] = [{"id": 0, "name": "tiny-animals", "supercategory": "none"}] + [
        {**c, "supercategory": "tiny-animals"} for c in data["categories"]
    ]
    data["info"] = {"description": "Exported from roboflow.com", "version": "1"}
    for k, img in enumerate(images):
        write_jpeg_file(root / "train" / f"{img.name}.jpg", img.height, img.width, seed=k)
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(data))
    return write_yaml(root / "data.yaml", {"path": ".", "train": "train"})


def write_roboflow_yolo(root: Path, images: list[TinyImage] = TINY_IMAGES) -> Path:
    """Roboflow's YOLO export: ``train/images`` and ``train/labels``, and its ``data.yaml`` as Roboflow writes it
    (``../train/images``, ``nc``, a ``roboflow:`` block, no ``path``)."""
    write_yolo(root / "staging", images)
    (root / "train").mkdir(parents=True)
    for kind in ("images", "labels"):
        (root / "staging" / kind / "train").rename(root / "train" / kind)
    values = {"train": "../train/images", "val": "../train/images", "nc": len(TINY_CLASSES), "names": TINY_CLASSES,
              "roboflow": {"workspace": "me", "project": "tiny", "version": 1, "license": "CC BY 4.0",
                           "url": "https://universe.roboflow.com/me/tiny/dataset/1"}}  # fmt: skip
    return write_yaml(root / "data.yaml", values)


def write_cvat(root: Path, images: list[TinyImage] = TINY_IMAGES) -> Path:
    """CVAT's "CVAT for images 1.1" export: ``annotations.xml`` and an ``images/`` folder."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>",
             "  <meta><job><labels>"]  # fmt: skip
    lines += [f"    <label><name>{name}</name><color>#ff0000</color><type>any</type></label>" for name in TINY_CLASSES]
    lines += ["  </labels></job></meta>"]
    for k, img in enumerate(images):
        write_jpeg_file(root / "images" / f"{img.name}.jpg", img.height, img.width, seed=k)
        lines.append(f'  <image id="{img.coco_id}" name="{img.name}.jpg" width="{img.width}" height="{img.height}">')
        for (x1, y1, x2, y2), label in zip(img.boxes, img.labels):
            lines.append(f'    <box label="{TINY_CLASSES[label - 1]}" source="manual" occluded="0" xtl="{x1:.2f}" '
                         f'ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0"></box>')  # fmt: skip
        lines.append("  </image>")
    lines.append("</annotations>")
    (root / "annotations.xml").write_text("\n".join(lines))
    return write_yaml(root / "data.yaml", {"path": ".", "names": TINY_CLASSES, "train": "annotations.xml"})


def labelme_dict(img: TinyImage, image_path: str) -> dict:
    """A LabelMe file of one image, as LabelMe 5 writes it (rectangles as two corner points)."""
    shapes = [
        {"label": TINY_CLASSES[label - 1], "points": [[x1, y1], [x2, y2]], "group_id": None, "description": "",
         "shape_type": "rectangle", "flags": {}, "mask": None}
        for (x1, y1, x2, y2), label in zip(img.boxes, img.labels)
    ]  # fmt: skip
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": img.height, "imageWidth": img.width}  # fmt: skip


def write_labelme(root: Path, images: list[TinyImage] = TINY_IMAGES) -> Path:
    """LabelMe's output: ``<name>.json`` beside each image in ``root/train``."""
    for k, img in enumerate(images):
        write_jpeg_file(root / "train" / f"{img.name}.jpg", img.height, img.width, seed=k)
        (root / "train" / f"{img.name}.json").write_text(json.dumps(labelme_dict(img, f"{img.name}.jpg"), indent=2))
    return write_yaml(root / "data.yaml", {"path": ".", "names": TINY_CLASSES, "train": "train"})
