"""A synthetic split the size of COCO train2017, for the data benchmarks: an instances JSON with COCO's fields
(polygon segmentations included, which make up most of the file) and an empty file per image.

118,287 images and about 828,000 boxes by default, 80 categories with COCO's ids (1..90 with gaps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

COCO_IMAGES = 118_287
BOXES_PER_IMAGE = 7.0  # COCO train2017 has 860,001 instances over 118,287 images, 7.3 per image
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def write_coco_split(folder: Path, num_images: int = COCO_IMAGES, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/images/*.jpg`` (empty files) and ``folder/instances.json``; returns (images dir, JSON)."""
    rng = np.random.default_rng(seed)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    counts = rng.poisson(BOXES_PER_IMAGE, num_images)
    for image_id in range(1, num_images + 1):
        name = f"{image_id:012d}.jpg"
        (images_dir / name).touch()
        width, height = int(rng.integers(400, 641)), int(rng.integers(300, 481))
        images.append({"license": 1, "file_name": name, "coco_url": f"http://images.example/{name}",
                       "height": height, "width": width, "date_captured": "2013-11-14 16:28:13",
                       "flickr_url": f"http://farm.example/{name}", "id": image_id})  # fmt: skip
        for _ in range(counts[image_id - 1]):
            annotations.append(_annotation(rng, len(annotations) + 1, image_id, width, height))
    categories = [{"supercategory": "thing", "id": c, "name": f"class{c}"} for c in COCO_CATEGORY_IDS]
    path = folder / "instances.json"
    data = {"info": {"description": "synthetic"}, "licenses": [{"id": 1, "name": "none", "url": ""}],
            "images": images, "annotations": annotations, "categories": categories}  # fmt: skip
    path.write_bytes(orjson.dumps(data))
    return images_dir, path


def _annotation(rng: np.random.Generator, ann_id: int, image_id: int, width: int, height: int) -> dict:
    """One object: a box inside the image, a 12-point polygon within it, COCO's rounding of the numbers."""
    w, h = float(rng.uniform(4, width / 2)), float(rng.uniform(4, height / 2))
    x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
    polygon = np.stack([x + rng.uniform(0, w, 12), y + rng.uniform(0, h, 12)], 1).round(2).ravel().tolist()
    return {"segmentation": [polygon], "area": round(w * h * 0.6, 4), "iscrowd": 0, "image_id": image_id,
            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
            "category_id": COCO_CATEGORY_IDS[int(rng.integers(80))], "id": ann_id}  # fmt: skip
