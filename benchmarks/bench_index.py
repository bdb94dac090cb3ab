"""Build and reload of the annotation index on a COCO train2017-size split (written by ``coco_size.py``).

Each case runs in a fresh process, so that its peak resident memory is its own: parsing with the cache off, the
first build with the cache on (parse and write the index file), and a reload of the index file.

    python benchmarks/bench_index.py [--folder DIR] [--images 118287]
    python benchmarks/bench_index.py --folder DIR --node 8 4 --cache on   # 8 torchrun processes x 4 workers

``--node P W`` measures one node instead: P processes under torchrun (Gloo), each building the split as
``ssd train`` does (the node's first process first, the others after it) and making one pass over its targets
with W fork-started loader workers; prints the node's time to build and its memory (PSS and private pages summed
over all P x (1 + W) processes; the shared part is the difference).
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


NODE = WORKERS.replace(
    'dataset = build_dataset(load_data_config(os.path.join(sys.argv[1], "data.yaml")), "train")',
    """import time
from ssd.engine.distributed import cleanup, gather_to_main, init_distributed, local_main_first
info = init_distributed("cpu")
start = time.perf_counter()
with local_main_first(info):
    dataset = build_dataset(load_data_config(os.path.join(sys.argv[1], "data.yaml")), "train")
built = time.perf_counter() - start""",
).replace(
    "print(main[0] + sum(pss for pss, _ in last), main[1] + sum(private for _, private in last))",
    """mine = (main[0] + sum(pss for pss, _ in last), main[1] + sum(private for _, private in last), built)
every = gather_to_main([mine])
if info.is_main:
    print(sum(m[0] for m in every), sum(m[1] for m in every), max(m[2] for m in every))
cleanup()""",
)


def node_memory(folder: Path, cache: str, processes: int, workers: int) -> tuple[float, float, float]:
    """PSS and private MB summed over ``processes`` torchrun processes with ``workers`` loader workers each, after
    one pass over the split's targets, and the seconds until the last process had built the split."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(NODE)
    try:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   script.name, str(folder), cache, str(workers)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        Path(script.name).unlink()
    pss, private, seconds = out.stdout.split()
    return int(pss) / 1024, int(private) / 1024, float(seconds)


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
    parser.add_argument("--node", type=int, nargs=2, metavar=("P", "W"), help="P processes x W workers instead")
    parser.add_argument("--cache", choices=["on", "off"], default="on", help="the index cache, with --node")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp())
    if not (folder / "instances.json").is_file():
        write_coco_split(folder, args.images)
    (folder / "data.yaml").write_text("format: coco\ntrain: {images: images, annotations: instances.json}\n")
    if args.node:
        processes, workers = args.node
        pss, private, seconds = node_memory(folder, args.cache, processes, workers)
        print(
            "| processes x workers | cache | built after s | PSS MB | private MB | shared MB |\n|---|---|---|---|---|---|"
        )
        print(
            f"| {processes} x {workers} | {args.cache} | {seconds:.1f} | {pss:.0f} | {private:.0f} | {pss - private:.0f} |"
        )
        return
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
