"""The compact annotation index: every box, label and flag of a split in a few flat arrays with per-image offsets,
and the image paths and ids packed into byte buffers, so that nothing in it is a per-image Python object.

Saved as one file and reloaded by memory-mapping it: the processes of a node and their loader workers then read
one copy from the page cache instead of each holding (and, under fork, slowly copying) its own. The file is
trusted only if its format version, the fingerprint of the annotation files it was built from and the digest of
its arrays all match; anything else is a cache miss and the split is parsed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write

MAGIC = b"SSDINDEX"
VERSION = 1
ALIGN = 64  # every array starts on a 64-byte boundary of the file
ARRAY_DTYPES = {
    "sizes": np.int64, "starts": np.int64, "boxes": np.float32, "labels": np.int64, "difficult": np.bool_,
    "iscrowd": np.bool_, "id_is_int": np.bool_,
}  # fmt: skip
STRING_FIELDS = ("paths", "image_ids", "annotation_paths")


class PackedStrings(Sequence[str]):
    """A list of strings stored as one UTF-8 buffer and ``len + 1`` offsets; items are decoded on access."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def of(cls, strings: Sequence[str]) -> PackedStrings:
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.data[self.offsets[index] : self.offsets[index + 1]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


class ImageIds(Sequence[Any]):
    """Image ids as the readers give them (int for COCO, str for file stems), packed as strings with an int flag."""

    def __init__(self, strings: PackedStrings, is_int: np.ndarray) -> None:
        self.strings, self.is_int = strings, is_int

    def __len__(self) -> int:
        return len(self.strings)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        value = self.strings[index]
        return int(value) if self.is_int[index] else value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


class AnnotationIndex:
    """One split's ground truth: ``sizes [N, 2]`` (height, width), ``starts [N + 1]`` (image i owns rows
    ``starts[i]:starts[i+1]``), ``boxes [M, 4]`` xyxy px, ``labels``, ``difficult``, ``iscrowd [M]``, and per image
    ``paths``, ``image_ids``, ``annotation_paths``. ``file`` is the index file it was mapped from, if any."""

    def __init__(self, arrays: dict[str, np.ndarray], file: Path | None = None) -> None:
        self.arrays, self.file = arrays, file
        for name in ARRAY_DTYPES:
            setattr(self, name, arrays[name])
        self.paths = PackedStrings(arrays["paths.data"], arrays["paths.offsets"])
        self.annotation_paths = PackedStrings(arrays["annotation_paths.data"], arrays["annotation_paths.offsets"])
        self.image_ids = ImageIds(PackedStrings(arrays["image_ids.data"], arrays["image_ids.offsets"]), self.id_is_int)

    @classmethod
    def from_records(cls, records: Sequence[Any], image_ids: Sequence[int | str]) -> AnnotationIndex:
        """The index of reader records (:class:`~ssd.data.dataset.ImageAnnotation`), with their final image ids."""
        counts = [len(r.labels) for r in records]
        arrays: dict[str, np.ndarray] = {
            "sizes": np.array([(r.height, r.width) for r in records], np.int64).reshape(-1, 2),
            "starts": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            "id_is_int": np.array([isinstance(i, int) for i in image_ids], np.bool_),
        }
        for name, field, shape in (("boxes", "boxes_xyxy", (4,)), ("labels", "labels", ()),
                                   ("difficult", "difficult", ()), ("iscrowd", "iscrowd", ())):  # fmt: skip
            dtype = ARRAY_DTYPES[name]
            parts = [np.asarray(getattr(r, field), dtype=dtype).reshape(-1, *shape) for r in records]
            arrays[name] = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
        for name, values in (("paths", [r.path for r in records]), ("image_ids", [str(i) for i in image_ids]),
                             ("annotation_paths", [r.annotation_path for r in records])):  # fmt: skip
            packed = PackedStrings.of(values)
            arrays[f"{name}.data"], arrays[f"{name}.offsets"] = packed.data, packed.offsets
        return cls(arrays)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getstate__(self) -> dict[str, Any]:
        """A mapped index pickles as its file name (spawned loader workers map the same file), others whole."""
        return {"file": self.file} if self.file is not None else {"arrays": self.arrays}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "file" in state:
            loaded = read_index_file(state["file"])
            if loaded is None:
                raise RuntimeError(f"{state['file']}: the annotation index changed while the data was loading")
            state = {"arrays": loaded[0].arrays, "file": state["file"]}
        self.__init__(state["arrays"], state.get("file"))


def write_index_file(path: Path, index: AnnotationIndex, fingerprint: str, meta: dict[str, Any]) -> None:
    """Save ``index`` with the ``fingerprint`` of its sources and ``meta`` (JSON: class names, problems, ...),
    atomically: a reader sees the old file or the new one, never half of one."""
    layout, offset = {}, 0
    for name, array in index.arrays.items():
        layout[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        offset += -(-array.nbytes // ALIGN) * ALIGN
    payload = bytearray(offset)
    for name, array in index.arrays.items():
        start = layout[name]["offset"]
        payload[start : start + array.nbytes] = np.ascontiguousarray(array).tobytes()
    header = json.dumps({"version": VERSION, "fingerprint": fingerprint, "arrays": layout, "meta": meta,
                         "digest": hashlib.sha1(payload).hexdigest()}).encode()  # fmt: skip
    head = MAGIC + len(header).to_bytes(8, "little") + header
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(head + bytes(-len(head) % ALIGN) + payload))
    path.chmod(0o644)  # readable by every user of a shared dataset folder, as the annotations are


def read_index_file(path: Path, fingerprint: str | None = None) -> tuple[AnnotationIndex, dict[str, Any]] | None:
    """The index and meta saved in ``path``, its arrays memory-mapped; None if the file is missing, of another
    version, built from other sources (``fingerprint``) or damaged in any way."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            data_start = -(-f.tell() // ALIGN) * ALIGN
        if header.get("version") != VERSION or (fingerprint is not None and header.get("fingerprint") != fingerprint):
            return None
        mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
        if hashlib.sha1(mapped).hexdigest() != header["digest"]:
            return None
        arrays = {}
        for name, spec in header["arrays"].items():
            dtype = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            arrays[name] = np.frombuffer(mapped, dtype, count, spec["offset"]).reshape(spec["shape"])
        return AnnotationIndex(arrays, Path(path)), header["meta"]
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, truncated or malformed: not trusted
        return None


def fingerprint(files: Sequence[Path], listed: Sequence[Path] = ()) -> str:
    """A digest of the annotation ``files`` (path, size, modification time and content) and of the ``listed``
    files (path, size and modification time: images, whose presence and size the readers check)."""
    digest = hashlib.sha1()
    for path in files:
        try:
            stat = os.stat(path)
            with open(path, "rb") as f:
                content = hashlib.file_digest(f, "sha1").hexdigest()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{content}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    for path in listed:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()
