"""What ``ssd predict`` writes besides the images: ``predictions.jsonl`` line by line as frames and images finish,
``predictions.json`` from it at the end, the COCO results and the list of skipped sources.

Entries are not kept in memory, so a camera can run for hours; only the COCO results, when asked for, are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from torch import Tensor

from ..files import atomic_write, atomic_write_text
from ..metrics import to_coco_results
from .sources import Skipped

log = logging.getLogger(__name__)


@dataclass
class PredictionFiles:
    """The JSON outputs of one ``ssd predict`` run in ``out_dir``, and its counts. A context manager: the JSON lines
    file is open inside it."""

    out_dir: Path
    save_json: bool
    coco_json: bool
    images: int = 0
    videos: int = 0
    frames: int = 0
    detections: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    coco: list[dict[str, Any]] = field(default_factory=list)
    jsonl: IO[str] | None = None

    @property
    def jsonl_path(self) -> Path:
        return self.out_dir / "predictions.jsonl"

    def __enter__(self) -> PredictionFiles:
        if self.save_json:
            self.jsonl = self.jsonl_path.open("w")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.jsonl is not None:
            self.jsonl.close()

    def add(self, entry: dict[str, Any], det: dict[str, Tensor], image_id: int | str) -> None:
        """One image's or frame's detections: a JSON line and, if asked for, its COCO results."""
        self.detections += len(det["scores"])
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(entry) + "\n")
        if self.coco_json:
            self.coco.extend(to_coco_results([det], [image_id]))

    def skip(self, source: Skipped) -> None:
        log.warning("skipped %s", source)
        self.skipped.append(source)

    def flush(self) -> None:
        """Push the JSON lines of the finished batch to disk."""
        if self.jsonl is not None:
            self.jsonl.flush()

    def finish(self, interrupted: bool) -> dict[str, Any]:
        """Write ``predictions.json`` (the JSON lines as one list), the COCO results and ``skipped.json``, each
        atomically; return the summary of the run."""
        summary: dict[str, Any] = {
            "images": self.images,
            "videos": self.videos,
            "frames": self.frames,
            "detections": self.detections,
            "skipped": [asdict(s) for s in self.skipped],
            "interrupted": interrupted,
            "out_dir": str(self.out_dir),
            "outputs": self.written,
            "predictions_json": None,
            "coco_json": None,
        }
        if self.jsonl is not None:
            self.jsonl.flush()
            summary["predictions_json"] = str(self.out_dir / "predictions.json")
            atomic_write(self.out_dir / "predictions.json", self._json_list)
        if self.coco_json:
            summary["coco_json"] = str(self.out_dir / "detections_coco.json")
            atomic_write_text(self.out_dir / "detections_coco.json", json.dumps(self.coco))
        if self.skipped:
            atomic_write_text(self.out_dir / "skipped.json", json.dumps(summary["skipped"], indent=1))
        return summary

    def _json_list(self, out: IO[bytes]) -> None:
        """The JSON lines file as one JSON list, copied line by line."""
        out.write(b"[")
        with self.jsonl_path.open("rb") as lines:
            for k, line in enumerate(lines):
                out.write(b"," if k else b"")
                out.write(line.rstrip(b"\n"))
        out.write(b"]")
