"""Times the compiled against the NumPy OKS NMS, one call per image over a seeded synthetic set of
images.

For oks_nms and soft_oks_nms it prints each implementation's total wall time, checks that both keep
the same indices on every image, and prints the speed-up (NumPy time / compiled time) against a 10x
target. Exits with status 1 if the kept indices differ anywhere or the extension is not built.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hrpose import nms
from hrpose.datasets.metadata import COCO

TARGET_SPEEDUP = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000,
                        help="number of images (one NMS call each)")
    parser.add_argument("--candidates", type=int, default=20, help="candidate poses per image")
    parser.add_argument("--keypoints", type=int, default=17, help="keypoints per pose")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="OKS threshold (HRNet's default 0.9)")
    parser.add_argument("--vis-threshold", type=float, default=None,
                        help="count only keypoints scored above this in both poses (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synthetic_image(rng: np.random.Generator, num_candidates: int, num_keypoints: int):
    """(poses, scores, areas) of one image: jittered copies of one to four people, as a detector's
    candidates cluster around the people actually present."""
    num_people = int(rng.integers(1, 5))
    people = (rng.uniform(0, 600, (num_people, 1, 2))
              + rng.normal(0, 30, (num_people, num_keypoints, 2)))
    jitter = (rng.exponential(4.0, (num_candidates, 1, 1))
              * rng.normal(size=(num_candidates, num_keypoints, 2)))
    xy = people[rng.integers(0, num_people, num_candidates)] + jitter
    extent = xy.max(axis=1) - xy.min(axis=1)
    poses = np.concatenate([xy, rng.uniform(0, 1, (num_candidates, num_keypoints, 1))], axis=2)
    return poses, rng.uniform(0, 1, num_candidates), extent[:, 0] * extent[:, 1]


def timed(run, images) -> tuple[float, list[np.ndarray]]:
    """Wall time of calling run once per image, and what each call kept."""
    run(*images[0])  # first-call costs (lazy imports, caches) are not what is measured
    start = time.perf_counter()
    kept = [run(*image) for image in images]
    return time.perf_counter() - start, kept


def compare(name: str, compiled_run, numpy_run, images) -> bool:
    """Times both implementations of one algorithm, prints the comparison, and says whether they
    agree."""
    numpy_seconds, numpy_kept = timed(numpy_run, images)
    compiled_seconds, compiled_kept = timed(compiled_run, images)
    identical = all(np.array_equal(a, b) for a, b in zip(compiled_kept, numpy_kept, strict=True))
    speedup = numpy_seconds / compiled_seconds
    per_image = 1e6 / len(images)
    print(f"{name}:")
    print(f"  NumPy     {numpy_seconds:8.3f} s  ({numpy_seconds * per_image:7.1f} us/image)")
    print(f"  compiled  {compiled_seconds:8.3f} s  ({compiled_seconds * per_image:7.1f} us/image)")
    print(f"  kept indices identical on all {len(images)} images: {'yes' if identical else 'NO'}")
    print(f"  speed-up compiled/NumPy: {speedup:.1f}x "
          f"(target {TARGET_SPEEDUP:.0f}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})")
    return identical


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if nms.compiled_impl is None:
        print("the compiled OKS-NMS extension is not built; build it with `pip install -e .`",
              file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    images = [synthetic_image(rng, args.candidates, args.keypoints) for _ in range(args.images)]
    # COCO's sigmas, repeated or cut to the requested number of keypoints.
    sigmas = np.resize(COCO.sigmas_array, args.keypoints)
    settings = dict(threshold=args.threshold, sigmas=sigmas, vis_threshold=args.vis_threshold)
    mean_kept = np.mean([len(nms.compiled_impl.oks_nms(*image, **settings)) for image in images])
    print(f"{args.images} images x {args.candidates} candidates x {args.keypoints} keypoints, "
          f"threshold {args.threshold}, seed {args.seed}; "
          f"oks_nms keeps {mean_kept:.1f} poses per image")
    agree = [
        compare("oks_nms",
                lambda *image: nms.compiled_impl.oks_nms(*image, **settings),
                lambda *image: nms.numpy_impl.oks_nms(*image, **settings), images),
        compare("soft_oks_nms (gaussian, max_dets 20)",
                lambda *image: nms.compiled_impl.soft_oks_nms(*image, **settings),
                lambda *image: nms.numpy_impl.soft_oks_nms(*image, **settings), images),
    ]
    return 0 if all(agree) else 1


if __name__ == "__main__":
    sys.exit(main())
