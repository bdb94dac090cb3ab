"""Time the generation of the synthetic shapes dataset (the demo's first step); prints medians (not a test).

python benchmarks/bench_shapes.py --images 2000 --repeats 3
"""

import argparse
import statistics
import tempfile
import time

from ssd.data.shapes import generate_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="training images to generate")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core, up to 8)")
    args = parser.parse_args()
    seconds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            generate_shapes(
                root, num_train=args.images, num_val=0, num_test=0, image_size=args.size, num_workers=args.workers
            )
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(
        f"| images | size | median seconds | images/s |\n|---|---|---|---|\n"
        f"| {args.images} | {args.size} | {median:.2f} | {args.images / median:.0f} |"
    )


if __name__ == "__main__":
    main()
