"""Run folders: ``runs/train``, ``runs/train2``, ... or a folder the user names."""

from __future__ import annotations

from pathlib import Path

from ..errors import SSDError


def new_run_dir(project: str | Path, name: str | None, exist_ok: bool, prefix: str = "train") -> Path:
    """``project/name`` or, without a name, the next free ``project/<prefix>``, ``<prefix>2``, ``<prefix>3``, ...

    A named folder that exists and is not empty is refused unless ``exist_ok``; the folder is not created here.
    """
    project = Path(project)
    if name:
        path = project / name
        if path.exists() and any(path.iterdir()) and not exist_ok:
            raise SSDError(f"{path} already exists: choose another --name, pass --exist-ok, or --resume it")
        return path
    n = 1
    while (project / numbered(prefix, n)).exists():
        n += 1
    return project / numbered(prefix, n)


def numbered(prefix: str, n: int) -> str:
    """The ``n``-th run folder name: ``train``, ``train2``, ``train3``, ..."""
    return prefix if n == 1 else f"{prefix}{n}"
