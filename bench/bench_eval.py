"""Times COCO keypoint evaluation with pycocotools against hotcoco on a generated COCO-like problem.

The problem: 17 joints with COCO's sigmas, several people per image (areas from segments
smaller than their boxes, some joints unlabelled), crowd regions in some images, images
without people, and about ten detections per image (jittered copies of the people, near
duplicates, false positives, scores rounded so that some tie). Both backends run
hrpose.evaluation.evaluate_coco_keypoints on the same pycocotools GT object, as the trainers
call it, alternately for --repeats rounds; the minimum of each is reported, because the
machine may be shared. It prints both wall times and the speed-up, hotcoco's thread count, and
whether all 10 stats are bit-equal (==). It prints the CPU times (all threads) too: their ratio
is hotcoco's speed-up per core, which the load of a shared machine disturbs less.
faster-coco-eval, when installed, is timed on the same problem for comparison only (it is not a
backend: it computes precision as tp / (tp + fp) without pycocotools' epsilon, so some stats
differ in the last bits). Exits with status 1 if hotcoco's stats differ or it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import time

import numpy as np
from pycocotools.coco import COCO

from hrpose.datasets.metadata import get_keypoint_info
from hrpose.evaluation import COCO_STAT_NAMES, evaluate_coco_keypoints
from hrpose.evaluation.backends import fast_backend_module

NUM_KEYPOINTS = 17


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="number of images")
    parser.add_argument("--detections", type=int, default=50000, help="number of detections in all")
    parser.add_argument("--small", action="store_true",
                        help="a quick run: 500 images, 5,000 detections")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per backend")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.small:
        args.images, args.detections = 500, 5000
    return args


def person(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(joints (17, 2), visibility (17,), box) of one person standing somewhere in a 640 x 480
    image."""
    width, height = rng.uniform(20, 250), rng.uniform(40, 400)
    left, top = rng.uniform(0, 640 - width / 2), rng.uniform(0, 480 - height / 2)
    joints = np.column_stack([left + rng.uniform(0, width, NUM_KEYPOINTS),
                              top + rng.uniform(0, height, NUM_KEYPOINTS)])
    visibility = rng.choice([0, 1, 2], NUM_KEYPOINTS, p=[0.3, 0.1, 0.6])
    return joints, visibility, [left, top, width, height]


def gt_annotation(annotation_id: int, image_id: int, joints: np.ndarray, visibility: np.ndarray,
                  box: list[float], rng: np.random.Generator) -> dict:
    left, top, width, height = box
    keypoints = np.column_stack([joints * (visibility[:, None] > 0), visibility])
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": keypoints.ravel().tolist(),
            "num_keypoints": int(np.count_nonzero(visibility)),
            "bbox": [float(v) for v in box], "area": float(width * height * rng.uniform(0.4, 0.8)),
            "segmentation": [[left, top, left + width, top, left + width, top + height,
                              left, top + height]]}


def crowd_region(annotation_id: int, image_id: int, rng: np.random.Generator) -> dict:
    width, height = rng.uniform(100, 300, 2)
    left, top = rng.uniform(0, 300, 2)
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 1,
            "keypoints": [0.0] * (3 * NUM_KEYPOINTS), "num_keypoints": 0,
            "bbox": [left, top, width, height], "area": float(width * height * 0.7),
            "segmentation": [[left, top, left + width, top, left + width, top + height,
                              left, top + height]]}


def detections_of_image(image_id: int, people: list[np.ndarray], count: int,
                        rng: np.random.Generator) -> list[dict]:
    """``count`` detections: jittered copies of the people (the better, the higher the score,
    now and then a near duplicate), then false positives."""
    results = []
    while len(results) < count:
        if people and rng.uniform() < 0.8:
            noise = rng.choice([1.0, 4.0, 12.0, 40.0])
            joints = people[rng.integers(len(people))] + rng.normal(0, noise, (NUM_KEYPOINTS, 2))
            score = float(np.clip(1.0 - noise / 50.0 + rng.normal(0, 0.1), 0.0, 1.0))
        else:
            joints = np.column_stack([rng.uniform(0, 640, NUM_KEYPOINTS),
                                      rng.uniform(0, 480, NUM_KEYPOINTS)])
            score = float(rng.uniform(0, 0.5))
        for _ in range(2 if rng.uniform() < 0.1 else 1):  # a near duplicate, same score
            joints = joints + rng.normal(0, 0.01, joints.shape)
            keypoints = np.column_stack([joints, rng.uniform(0, 1, NUM_KEYPOINTS)])
            results.append({"image_id": image_id, "category_id": 1,
                            "keypoints": keypoints.ravel().tolist(), "score": round(score, 2)})
    return results[:count]


def coco_like_problem(num_images: int, num_detections: int, seed: int) -> tuple[dict, list[dict]]:
    """(GT dict, results) with ids from 1, as COCO's are."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    per_image = np.full(num_images, num_detections // num_images)
    per_image[: num_detections % num_images] += 1
    for index in range(num_images):
        image_id = 100000 + 7 * index
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640,
                       "height": 480})
        num_people = 0 if rng.uniform() < 0.05 else int(rng.geometric(0.35))
        people = []
        for _ in range(num_people):
            joints, visibility, box = person(rng)
            annotations.append(gt_annotation(len(annotations) + 1, image_id, joints, visibility,
                                             box, rng))
            people.append(joints)
        if rng.uniform() < 0.1:
            annotations.append(crowd_region(len(annotations) + 1, image_id, rng))
        results += detections_of_image(image_id, people, int(per_image[index]), rng)
    categories = [{"id": 1, "name": "person",
                   "keypoints": list(get_keypoint_info("coco").keypoint_names)}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def hrpose_run(backend: str, coco_gt: COCO, results: list[dict], sigmas: np.ndarray):
    def run() -> list[float]:
        return list(evaluate_coco_keypoints(coco_gt, results, sigmas, backend).values())
    return run


def faster_coco_eval_run(gt: dict, results: list[dict], sigmas: np.ndarray):
    """The same evaluation on faster-coco-eval's API. Its COCO indexes the GT dict itself; it
    writes into the annotation and result dicts, so it gets shallow copies, as pycocotools does
    in hrpose."""
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster

    def run() -> list[float]:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = FasterCOCO({**gt, "annotations": [dict(item) for item in gt["annotations"]]})
            detections = coco_gt.loadRes([dict(result) for result in results])
            evaluator = COCOeval_faster(coco_gt, detections, "keypoints", kpt_oks_sigmas=sigmas,
                                        print_function=lambda *args: None)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return [float(value) for value in evaluator.stats]
    return run


def timed_rounds(runs: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Minimum wall and CPU time (all threads of this process) of each run over ``repeats``
    alternating rounds, and each run's stats."""
    wall = {name: float("inf") for name in runs}
    cpu = dict(wall)
    stats = {}
    for _ in range(repeats):
        for name, run in runs.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            stats[name] = run()
            wall[name] = min(wall[name], time.perf_counter() - wall_start)
            cpu[name] = min(cpu[name], time.process_time() - cpu_start)
    return wall, cpu, stats


def hotcoco_threads() -> str:
    """hotcoco's rayon pool: RAYON_NUM_THREADS when set, else every CPU this process may use."""
    if os.environ.get("RAYON_NUM_THREADS"):
        return f"{os.environ['RAYON_NUM_THREADS']} (RAYON_NUM_THREADS)"
    return f"{len(os.sched_getaffinity(0))} (all CPUs available; set RAYON_NUM_THREADS to change)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.disable(logging.INFO)  # hrpose logs the summaries; the comparison is printed here
    if fast_backend_module() is None:
        print("hotcoco is not installed; install it with `pip install hotcoco`", file=sys.stderr)
        return 1
    gt, results = coco_like_problem(args.images, args.detections, args.seed)
    coco_gt = COCO()
    coco_gt.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    sigmas = get_keypoint_info("coco").sigmas_array
    crowd = sum(annotation["iscrowd"] for annotation in gt["annotations"])
    print(f"{args.images} images, {len(gt['annotations']) - crowd} people + {crowd} crowd regions, "
          f"{len(results)} detections (seed {args.seed}); min of {args.repeats} alternating rounds")
    print(f"hotcoco threads: {hotcoco_threads()}")
    runs = {"pycocotools": hrpose_run("pycocotools", coco_gt, results, sigmas),
            "hotcoco": hrpose_run("hotcoco", coco_gt, results, sigmas)}
    with contextlib.suppress(ImportError):
        import faster_coco_eval  # noqa: F401

        runs["faster-coco-eval"] = faster_coco_eval_run(gt, results, sigmas)
    wall, cpu, stats = timed_rounds(runs, args.repeats)
    reference = stats["pycocotools"]
    print(f"  {'pycocotools':17s} wall {wall['pycocotools']:7.3f} s  "
          f"cpu {cpu['pycocotools']:7.3f} s  "
          f"AP {reference[0]:.4f}  (reference)")
    for name in runs:
        if name == "pycocotools":
            continue
        differing = [stat for stat, a, b in zip(COCO_STAT_NAMES, stats[name], reference) if a != b]
        note = "" if name == "hotcoco" else "  (not a backend; comparison only)"
        equal = "yes" if not differing else f"NO ({', '.join(differing)})"
        print(f"  {name:17s} wall {wall[name]:7.3f} s  cpu {cpu[name]:7.3f} s  "
              f"speed-up {wall['pycocotools'] / wall[name]:5.1f}x wall, "
              f"{cpu['pycocotools'] / cpu[name]:5.1f}x cpu  all 10 stats bit-equal: {equal}{note}")
    return 0 if stats["hotcoco"] == reference else 1


if __name__ == "__main__":
    sys.exit(main())
