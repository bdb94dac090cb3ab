"""Build and reload of the annotation index on a COCO train2017-size split (written by ``coco_size.py``).

Each case runs in a fresh process, so that its peak resident memory is its own: parsing with the cache off, the
first build with the cache on (parse and write the index file), and a reload of the index file.

    python benchmarks/bench_index.py [--folder DIR] [--images 118287]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from coco_size import COCO_IMAGES, write_coco_split

CASE = """
import os, resource, shutil, sys, time
if sys.argv[2] == "first":
    shutil.rmtree(os.path.join(sys.argv[1], ".ssd_index"), ignore_errors=True)
os.environ["SSD_INDEX_CACHE"] = "off" if sys.argv[2] == "off" else "on"
from ssd.data import build_dataset, load_data_config
start = time.perf_counter()
dataset = build_dataset(load_data_config(os.path.join(sys.argv[1], "data.yaml")), "train")
seconds = time.perf_counter() - start
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(dataset), len(dataset.box_table()["labels"]))
"""


WORKERS = """
import collections, os, sys, torch
os.environ["SSD_INDEX_CACHE"] = sys.argv[2]
from torch.utils.data import DataLoader, Dataset
from ssd.data import build_dataset, load_data_config

def memory():
    fields = dict(line.split(":") for line in open("/proc/self/smaps_rollup").read().splitlines()[1:])
    kb = lambda key: int(fields[key].split()[0])
    return kb("Pss"), kb("Private_Clean") + kb("Private_Dirty")

class Targets(Dataset):
    def __init__(self, dataset):
        self.dataset = dataset
    def __len__(self):
        return len(self.dataset)
    def __getitem__(self, i):
        target = self.dataset.targets(i)
        return (self.dataset.paths[i], len(target["boxes"])) if i < len(self) - 4 else memory()

dataset = build_dataset(load_data_config(os.path.join(sys.argv[1], "data.yaml")), "train")
loader = DataLoader(Targets(dataset), batch_size=None, num_workers=int(sys.argv[3]), multiprocessing_context="fork")
last = collections.deque(loader, maxlen=4)  # each worker's memory after its share of one pass
main = memory()
print(main[0] + sum(pss for pss, _ in last), main[1] + sum(private for _, private in last))
"""


def worker_memory(folder: Path, cache: str, workers: int) -> tuple[float, float]:
    """PSS and private MB of one process and its loader workers after one pass over the split's targets."""
    out = subprocess.run([sys.executable, "-c", WORKERS, str(folder), cache, str(workers)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    pss, private = out.stdout.split()
    return int(pss) / 1024, int(private) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="keep the synthetic split here (written if absent)")
    parser.add_argument("--images", type=int, default=COCO_IMAGES)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp())
    if not (folder / "instances.json").is_file():
        write_coco_split(folder, args.images)
    (folder / "data.yaml").write_text("format: coco\ntrain: {images: images, annotations: instances.json}\n")
    print("| case | seconds | peak resident MB | images | boxes |\n|---|---|---|---|---|")
    for case in ("off", "first", "reload"):
        out = subprocess.run(
            [sys.executable, "-c", CASE, str(folder), case], capture_output=True, text=True, check=True
        )
        seconds, peak, images, boxes = out.stdout.split()
        print(f"| {case} | {float(seconds):.2f} | {float(peak):.0f} | {images} | {boxes} |")
    print("\n| cache | PSS MB, 1 process + 4 workers | private MB |\n|---|---|---|")
    for cache in ("off", "on"):
        pss, private = worker_memory(folder, cache, 4)
        print(f"| {cache} | {pss:.0f} | {private:.0f} |")


if __name__ == "__main__":
    main()
