"""Videos written by the tests, and a loopback HTTP server that serves them as a network stream would."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch


def moving_square_frames(count: int, height: int, width: int) -> list[torch.Tensor]:
    """``uint8 [H, W, 3]`` frames of a white square moving right over a dark noisy background."""
    generator = torch.Generator().manual_seed(3)
    frames = []
    for k in range(count):
        frame = torch.randint(0, 40, (height, width, 3), generator=generator, dtype=torch.uint8)
        x = (5 * k) % max(width - height // 3, 1)
        frame[height // 3 : 2 * height // 3, x : x + height // 3] = 255
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[torch.Tensor], fps: int = 25) -> Path:
    """The frames encoded with H.264 into ``path`` (an ``.mp4``, or a streamable MPEG-TS ``.ts``)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.numpy(), format="rgb24")))
        container.mux(stream.encode())
    return path


def decoded_frames(path: Path) -> list[torch.Tensor]:
    """The frames of a video file as the readers see them: ``uint8 [3, H, W]``."""
    import av

    with av.open(str(path)) as container:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    cut_after: int | None = None  # bytes served of each file before the connection is dropped

    def log_message(self, *args) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:
        if self.cut_after is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(self.cut_after))  # then the handler returns and the connection closes


@contextmanager
def http_server(folder: Path, cut_after: int | None = None) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port for the block; yields the base URL. With ``cut_after``, each
    response stops after that many bytes, as a stream that drops."""
    handler = type("Handler", (_QuietHandler,), {"cut_after": cut_after})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
