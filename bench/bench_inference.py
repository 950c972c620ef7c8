"""Forward-pass speed of the TEST.BACKEND engines against the eager float32 model, on the CPU.

Per case (model, input, batch) it builds the experiment's model with random weights, prepares
every engine (the onnxruntime and openvino export and compilation is timed as "prep"), then runs
the engines in turn, round after round, in this one process, and keeps each engine's fastest
forward pass: a CPU shared with other work makes single runs noisy, and alternating (in an order
that rotates round by round, with a short pause before each run) spreads the noise over all
engines. It prints per engine the time, the ratio to eager, the largest absolute
output difference from eager, and the fraction of this CPU's float32 convolution throughput the
forward pass reaches: the model's true multiply-adds (models.complexity) x 2 over the time,
divided by the FLOP/s of one large 3x3 convolution (the yardstick), which takes its turn among
the engines so that it sees the same load. From the yardstick it prints the ceiling: the ratio
to eager of an engine that ran the whole model at the yardstick's speed, which no engine that
computes the convolutions directly in float32 passes. The last lines say whether the targets
(HRNet-W32 256x192: 1.8x at batch 32, 1.5x at batch 1, outputs within 1e-4) were met.

Defaults (a few minutes on two idle cores): HRNet-W32 256x192 at batch 1 and 32, HRNet-W48
384x288 at batch 8, HigherHRNet-W32 512 at batch 1; engines eager, fused, onnxruntime,
openvino; ten timed rounds at batch 1 (HRNet-W32) and five (HigherHRNet), three at the larger
batches. --rounds, --warmup, --cases, --engines and --threads change that.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timing import time_in_turns

from hrpose.config import load_config
from hrpose.engine.backends import BACKENDS, inference_model
from hrpose.models import build_model
from hrpose.models.complexity import measure_complexity

# A runtime's threads may spin for a while after its run (onnxruntime's do by default); each
# engine starts after the previous one's have gone idle, as when it is used alone.
ENGINE_PAUSE_SECONDS = 0.3


@dataclass(frozen=True)
class Case:
    name: str
    cfg: str
    batch: int
    height: int
    width: int
    rounds: int  # timed rounds: more where a forward pass is short


@dataclass(frozen=True)
class CaseResult:
    ratios: dict[str, float]       # each engine's speed-up over eager
    differences: dict[str, float]  # each engine's largest output difference from eager
    ceiling: float                 # the ratio of an engine running at the yardstick's speed


W32_256 = "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
W48_384 = "experiments/coco/hrnet/w48_384x288_adam_lr1e-3.yaml"
HIGHER_W32_512 = "experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml"
CASES = {
    "w32_256x192_b1": Case("HRNet-W32 256x192", W32_256, 1, 256, 192, rounds=10),
    "w32_256x192_b32": Case("HRNet-W32 256x192", W32_256, 32, 256, 192, rounds=3),
    "w48_384x288_b8": Case("HRNet-W48 384x288", W48_384, 8, 384, 288, rounds=3),
    "higher_w32_512_b1": Case("HigherHRNet-W32 512", HIGHER_W32_512, 1, 512, 512, rounds=5),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from: {', '.join(CASES)} (default all)")
    parser.add_argument("--engines", default=",".join(BACKENDS),
                        help="comma-separated TEST.BACKEND values; eager is always run "
                             "(default %(default)s)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds over the engines; the fastest counts (default: "
                             "each case's own, 3 to 10 by its cost)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed rounds first (default 0: preparing an engine already "
                             "runs it once, which creates its kernels)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and onnxruntime and openvino) threads (default torch's "
                             "choice)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    engines = ["eager"] + [name for name in args.engines.split(",") if name != "eager"]
    if any(name not in BACKENDS for name in engines):
        parser.error(f"--engines takes {', '.join(BACKENDS)}, got {args.engines}")
    args.engines = engines
    return args


# Ratio to eager that the fastest engine must reach, by case (HRNet-W32 256x192).
TARGETS = {"w32_256x192_b32": 1.8, "w32_256x192_b1": 1.5}
OUTPUT_TOLERANCE = 1e-4
YARDSTICK = "yardstick"
YARDSTICK_FLOPS = 2 * 8 * 256 * 256 * 9 * 64 * 48
YARDSTICK_TURNS = 3


def conv_yardstick() -> tuple[str, Callable[[], torch.Tensor]]:
    """One large float32 3x3 convolution (256 -> 256 channels on 8x256x64x48, YARDSTICK_FLOPS)
    in the faster of NCHW and NHWC: what oneDNN's convolution kernels reach on this CPU at
    best. Returns the layout's name and a function that runs it."""
    weight = torch.randn(256, 256, 3, 3)
    runs = {}
    for name, memory_format in (("NCHW", torch.contiguous_format),
                                ("NHWC", torch.channels_last)):
        x = torch.randn(8, 256, 64, 48).contiguous(memory_format=memory_format)
        w = weight.contiguous(memory_format=memory_format)
        runs[name] = lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1)
    with torch.no_grad():
        seconds, _ = time_in_turns(runs, rounds=3)
    name = min(seconds, key=lambda layout: min(seconds[layout]))
    return name, runs[name]


def engine_input(engine_name: str, images: torch.Tensor) -> torch.Tensor:
    # The fused engine is channels-last: its input comes the same way (the validation loop and
    # the predictor hand channels-last batches over).
    if engine_name == "fused":
        return images.contiguous(memory_format=torch.channels_last)
    return images


def leaves(outputs) -> list[torch.Tensor]:
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


def max_difference(reference, outputs) -> float:
    return max((a.float() - b.float()).abs().max().item()
               for a, b in zip(leaves(reference), leaves(outputs)))


def run_case(case: Case, engines: list[str], rounds: int, warmup: int,
             yardstick: Callable[[], torch.Tensor]) -> CaseResult:
    """Times the engines (and the yardstick) in turns, prints the case's table and returns
    what the verdicts need."""
    cfg = load_config(case.cfg, ["DEVICE", "cpu", "MODEL.PRETRAINED", ""])
    torch.manual_seed(0)
    model = build_model(cfg, is_train=False).eval()
    macs = measure_complexity(model, (case.height, case.width)).macs * case.batch
    images = torch.randn(case.batch, 3, case.height, case.width,
                         generator=torch.Generator().manual_seed(0))
    prepared, prep_seconds = {}, {}
    for name in engines:
        start = time.perf_counter()
        prepared[name] = inference_model(cfg, model, torch.device("cpu"), name)
        with torch.no_grad():
            prepared[name](engine_input(name, images[:1]))
        prep_seconds[name] = time.perf_counter() - start
    runs = {name: (lambda name=name: prepared[name](engine_input(name, images)))
            for name in engines}
    # Several turns per round: the yardstick is short, and its fastest run is the one that counts.
    yardstick_turns = [f"{YARDSTICK} {index}" for index in range(YARDSTICK_TURNS)]
    runs.update({name: yardstick for name in yardstick_turns})
    with torch.no_grad():
        reference = model(images)
        time_in_turns(runs, warmup, ENGINE_PAUSE_SECONDS)
        seconds, outputs = time_in_turns(runs, rounds, ENGINE_PAUSE_SECONDS)
    best = {name: min(times) for name, times in seconds.items()}
    differences = {name: max_difference(reference, outputs[name]) for name in engines}
    peak = YARDSTICK_FLOPS / min(best[name] for name in yardstick_turns)
    ceiling = best["eager"] / (2 * macs / peak)
    print(f"\n{case.name}, batch {case.batch} ({macs / 1e9:.1f} GMACs); yardstick "
          f"{peak / 1e9:.0f} GFLOP/s in this case's rounds, ceiling {ceiling:.2f}x")
    print(f"  {'engine':12s} {'ms':>9s} {'vs eager':>9s} {'max diff':>10s} {'of peak':>8s} "
          f"{'prep s':>7s}")
    for name in engines:
        seconds = best[name]
        print(f"  {name:12s} {seconds * 1e3:9.1f} {best['eager'] / seconds:8.2f}x "
              f"{differences[name]:10.2e} {2 * macs / seconds / peak:7.0%} "
              f"{prep_seconds[name]:7.1f}")
    return CaseResult({name: best["eager"] / best[name] for name in engines}, differences,
                      ceiling)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    layout, yardstick = conv_yardstick()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; yardstick: float32 "
          f"3x3 convolution 256->256 on 8x256x64x48, {layout}")
    results = {}
    for name in args.cases.split(","):
        case = CASES[name]
        results[name] = run_case(case, args.engines, args.rounds or case.rounds, args.warmup,
                                 yardstick)
    print()
    for name, target in TARGETS.items():
        if name not in results:
            continue
        ratios = results[name].ratios
        engine = max((engine for engine in args.engines if engine != "eager"),
                     key=lambda engine: ratios[engine], default="eager")
        print(f"{CASES[name].name} batch {CASES[name].batch}: {engine} {ratios[engine]:.2f}x "
              f"(target {target}x: {'met' if ratios[engine] >= target else 'missed'}; "
              f"ceiling {results[name].ceiling:.2f}x)")
    differences = [difference for result in results.values()
                   for difference in result.differences.values()]
    print(f"outputs within {OUTPUT_TOLERANCE:g} of eager in every case: "
          f"{'yes' if max(differences) <= OUTPUT_TOLERANCE else 'no'} "
          f"(largest difference {max(differences):.2e})")


if __name__ == "__main__":
    main()
