"""Times one training step of HAE's hierarchical tag loss against plain associative embedding.

A step is the tag loss's forward and backward on the 1/4-resolution tag maps of a batch of
--batch images at --input-size input (COCO: 17 per-joint tag maps of input/4 squared), with
HigherHRNet's 30 person slots; each image holds a random number of people (1 to --max-people)
with random visible joints, encoded by the project's tag codec. Plain AE: ``AELoss``. HAE: the
``HierarchicalAELoss`` of the COCO experiments (COCO's keypoint groups, pull weights 0 / 1.0 /
1.5, focal pulling on). Both are called as the trainer calls them, as modules, and see the
same tags and joints; each time is the fastest of --repeats steps after a warm-up, the two
losses alternating. A tag-loss step takes about a millisecond on a CPU, so the fastest of a few
hundred is needed for the ratio to settle (with 20 steps it moved by +-0.1 between runs).
Prints both times and the ratio (target: HAE below 1.5x AE). Also prints the step of the whole
loss the trainer runs (the masked heatmap loss of both stages plus the tag loss), where the tag
loss is a smaller share, and the tag-loss step with focal pulling off, which separates the
hierarchy's cost from that of the Tukey fences. Exits 1 if the loss with all groups singletons
and weights (1, 0, 0) does not equal plain AE (a sanity check that both losses read the same
tags).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from hrpose.codecs.associative_embedding import encode_ae_tags
from hrpose.datasets.metadata import get_keypoint_info
from hrpose.losses.associative_embedding import AELoss, masked_heatmap_loss
from hrpose.losses.hierarchical_ae import HierarchicalAELoss

TARGET_RATIO = 1.5
MAX_NUM_PEOPLE = 30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="images per batch")
    parser.add_argument("--input-size", type=int, default=512, help="network input side")
    parser.add_argument("--max-people", type=int, default=20, help="most people in one image")
    parser.add_argument("--repeats", type=int, default=300,
                        help="timed tag-loss steps per loss")
    parser.add_argument("--whole-loss-repeats", type=int, default=10,
                        help="timed steps per loss of the whole loss (about 0.2 s each on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def random_batch(batch: int, num_joints: int, size: int, max_people: int,
                 rng: np.random.Generator) -> torch.Tensor:
    """(batch, 30, J, 2) tag-codec joints of random people with about 70 % joints visible."""
    encoded = []
    for _ in range(batch):
        people = int(rng.integers(1, max_people + 1))
        joints = np.zeros((people, num_joints, 3), dtype=np.float32)
        joints[..., :2] = rng.uniform(0, size - 1, size=(people, num_joints, 2))
        joints[..., 2] = rng.random((people, num_joints)) < 0.7
        encoded.append(encode_ae_tags(joints, size, MAX_NUM_PEOPLE, num_joints=num_joints))
    return torch.from_numpy(np.stack(encoded))


def time_pair(first, second, repeats: int) -> tuple[float, float]:
    """Fastest seconds of first() and second() over repeats rounds, after two warm-up rounds.

    The two alternate (and swap order every round), so that load from other processes on the
    machine falls on both alike.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for round_index in range(repeats + 2):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            (first, second)[which]()
            if round_index >= 2:
                times[which].append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    info = get_keypoint_info("coco")
    num_joints = info.num_keypoints
    size = args.input_size // 4
    joints = random_batch(args.batch, num_joints, size, args.max_people, rng)
    tags = torch.randn(args.batch, num_joints, size, size, requires_grad=True)
    groups = info.get_keypoint_groups("default")
    hae = HierarchicalAELoss(num_joints, groups, "exp", (0.0, 1.0, 1.5), focal_pull=True)

    singletons = HierarchicalAELoss(num_joints, [(k,) for k in range(num_joints)], "exp",
                                    (1.0, 0.0, 0.0))
    plain_ae = AELoss("exp")
    ae_push, ae_pull = plain_ae(tags, joints)
    one_push, one_pull = singletons(tags, joints)
    if not (torch.allclose(ae_push, one_push, atol=1e-6)
            and torch.allclose(ae_pull, one_pull, atol=1e-6)):
        print("FAILED: HAE with singleton groups and weights (1, 0, 0) differs from plain AE")
        return 1

    def tag_step(loss_fn):
        def step():
            tags.grad = None
            push, pull = loss_fn(tags, joints)
            (push.mean() + pull.mean()).backward()
        return step

    heat_quarter = torch.rand(args.batch, num_joints, size, size, requires_grad=True)
    heat_half = torch.rand(args.batch, num_joints, 2 * size, 2 * size, requires_grad=True)
    target_quarter = torch.rand_like(heat_quarter)
    target_half = torch.rand_like(heat_half)
    mask_quarter = torch.ones(args.batch, size, size)
    mask_half = torch.ones(args.batch, 2 * size, 2 * size)

    def full_step(loss_fn):
        def step():
            for tensor in (tags, heat_quarter, heat_half):
                tensor.grad = None
            push, pull = loss_fn(tags, joints)
            heat = (masked_heatmap_loss(heat_quarter, target_quarter, mask_quarter).mean()
                    + masked_heatmap_loss(heat_half, target_half, mask_half).mean())
            (heat + 1e-3 * push.mean() + 1e-3 * pull.mean()).backward()
        return step

    people = int((joints[..., 1] > 0).any(dim=2).sum())
    print(f"batch {args.batch}, input {args.input_size} (tag maps {num_joints}x{size}x{size}), "
          f"{people} people, {torch.get_num_threads()} threads, fastest of {args.repeats} steps "
          f"({args.whole_loss_repeats} for the whole loss)")
    no_focal = HierarchicalAELoss(num_joints, groups, "exp", (0.0, 1.0, 1.5), focal_pull=False)
    ratios = {}
    for name, make_step, hierarchical_loss, repeats in (
            ("tag loss", tag_step, hae, args.repeats),
            ("whole loss", full_step, hae, args.whole_loss_repeats),
            ("no focal", tag_step, no_focal, args.repeats)):
        plain, hierarchical = time_pair(make_step(plain_ae), make_step(hierarchical_loss),
                                        repeats)
        ratios[name] = hierarchical / plain
        print(f"{name:10s}  AE {plain * 1e3:8.2f} ms   HAE {hierarchical * 1e3:8.2f} ms   "
              f"ratio {ratios[name]:.2f}x")
    verdict = "met" if ratios["tag loss"] < TARGET_RATIO else "NOT met"
    print(f"target: the hierarchical tag-loss step below {TARGET_RATIO}x plain AE: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
