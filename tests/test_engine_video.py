"""Video sources: files, cameras and URLs told apart, a stream read over HTTP on loopback frame by frame, every
N-th frame, and a stream that drops ending cleanly with the frames it gave."""

import pytest
import torch

from ssd.engine.sources import stream_name
from ssd.engine.video import VideoReader, is_live
from stream_helpers import decoded_frames, http_server, moving_square_frames, write_video

av = pytest.importorskip("av")


def test_cameras_and_urls_are_live_unless_a_file_has_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in ("0", "2", "rtsp://cam.local/live", "RTMP://host/app", "http://127.0.0.1:8000/a.ts", "video=Cam"):
        assert is_live(source), source
    for source in ("clip.mp4", "folder/", "ftp://host/a.mp4", "file.ts"):
        assert not is_live(source), source
    (tmp_path / "0").write_bytes(b"")
    assert not is_live("0")
    assert [stream_name(s) for s in ("0", "rtsp://cam.local/live/cam1", "http://h:80/", "rtsp://h/a b.sdp")] == [
        "camera0",
        "cam1",
        "h",
        "a_b",
    ]


def test_a_stream_over_http_gives_the_frames_of_the_file_one_at_a_time(tmp_path):
    path = write_video(tmp_path / "clip.ts", moving_square_frames(30, 48, 64))
    expected = decoded_frames(path)
    with http_server(tmp_path) as url, VideoReader(f"{url}/clip.ts") as video:
        assert video.live and video.fps == 25
        chunks = list(video.chunks(8))
    assert [len(c) for c in chunks] == [1] * 30  # live frames do not wait for the next ones
    for (number, frame), want in zip((c[0] for c in chunks), expected):
        assert torch.equal(frame, want), number
    with VideoReader(path) as video:
        assert not video.live
        strided = [item for chunk in video.chunks(4, stride=3) for item in chunk]
    assert [n for n, _ in strided] == list(range(0, 30, 3))
    assert all(torch.equal(frame, expected[n]) for n, frame in strided)


def test_a_stream_that_drops_ends_cleanly_with_the_frames_it_gave(tmp_path):
    path = write_video(tmp_path / "clip.ts", moving_square_frames(60, 48, 64))
    expected = decoded_frames(path)
    with http_server(tmp_path, cut_after=path.stat().st_size // 2) as url, VideoReader(f"{url}/clip.ts") as video:
        frames = [frame for chunk in video.chunks(1) for _, frame in chunk]
    assert 5 < len(frames) < 60
    assert all(torch.equal(got, want) for got, want in zip(frames, expected))


def test_the_writer_takes_a_fractional_rate_and_refuses_a_frame_of_another_size(tmp_path):
    from ssd.engine.video import DEFAULT_FPS, VideoWriter
    from ssd.errors import DataError

    writer = VideoWriter(tmp_path / "out.mp4", DEFAULT_FPS / 3, 64, 48)  # 25/3 frames per second
    frames = moving_square_frames(4, 48, 64)
    for frame in frames:
        writer.write(frame.permute(2, 0, 1))
    with pytest.raises(DataError, match="a frame of 32x48 in a 64x48 video"):
        writer.write(torch.zeros(3, 48, 32, dtype=torch.uint8))
    writer.close()
    with VideoReader(tmp_path / "out.mp4") as video:
        assert video.fps == DEFAULT_FPS / 3 and sum(len(c) for c in video.chunks(8)) == 4


def test_a_camera_that_is_not_there_is_named_in_the_error(tmp_path, monkeypatch):
    from pathlib import Path

    from ssd.errors import DataError

    monkeypatch.chdir(tmp_path)
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    with pytest.raises(DataError, match="cannot open stream") as info:
        VideoReader("9")  # /dev/video9 through v4l2 on Linux, avfoundation's device 9 on macOS
    assert info.value.path == "9"
