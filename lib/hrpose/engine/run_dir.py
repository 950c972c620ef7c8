"""Run folders and logging: output/<dataset>/<model>/<cfg stem>/, the run log and tensorboard
dir."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from yacs.config import CfgNode

from ..errors import HrposeError
from ..utils.io import atomic_write, remove_stale_temporaries
from .distributed import broadcast_from_main, is_main_process

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)-15s %(message)s"
_HANDLER_MARK = "_hrpose_run_handler"
# The originals' '%Y-%m-%d-%H-%M' plus seconds; a suffix '-1', '-2', ... keeps names unique.
TIMESTAMP_FORMAT = "%Y-%m-%d-%H-%M-%S"
# Phases that train and write the files below.
TRAINING_PHASES = ("train", "demo")
# What a training run leaves in its folder that a new run would overwrite (folders end in '/').
RUN_OUTPUTS = ("checkpoint.pth", "model_best.pth", "final_state.pth", "results/", "pred.mat")
RESUME_CHECKPOINT = "checkpoint.pth"
PREVIOUS_RUN_PREFIX = "previous-"


def current_timestamp() -> str:
    """The local time in TIMESTAMP_FORMAT, as run files are named."""
    return time.strftime(TIMESTAMP_FORMAT)


class RunFolderError(HrposeError):
    """A run that would overwrite the files of an earlier run in its output folder."""


@dataclass(frozen=True)
class RunPaths:
    """Where one run writes: its output folder, log file and tensorboard folder."""

    output_dir: str
    log_file: str
    tensorboard_dir: str


def config_stem(cfg_path: str) -> str:
    """The experiment name: the YAML file name without '.yaml' (the originals cut at the first '.',
    which turned 'hg4_128x96_d256x3_adam_lr2.5e-4' into 'hg4_128x96_d256x3_adam_lr2')."""
    name = Path(cfg_path).name if cfg_path else "default"
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def make_run_paths(cfg: CfgNode, cfg_path: str, phase: str,
                   timestamp: str | None = None) -> RunPaths:
    """Compute (without creating) the folders of a run, as the originals lay them out."""
    timestamp = timestamp or current_timestamp()
    stem = config_stem(cfg_path)
    relative = Path(cfg.DATASET.DATASET) / cfg.MODEL.NAME
    output_dir = Path(cfg.OUTPUT_DIR) / relative / stem
    return RunPaths(
        output_dir=str(output_dir),
        log_file=str(output_dir / f"{stem}_{timestamp}_{phase}.log"),
        tensorboard_dir=str(Path(cfg.LOG_DIR) / relative / f"{stem}_{timestamp}"),
    )


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    """Send hrpose log records to the console and, if given, to log_file; safe to call
    repeatedly."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)


def earlier_run_outputs(output_dir: str) -> list[str]:
    """The RUN_OUTPUTS present in output_dir (a results/ folder holding only hidden files, such
    as a killed write's temporary, does not count)."""
    found = []
    for name in RUN_OUTPUTS:
        path = os.path.join(output_dir, name.rstrip("/"))
        if name.endswith("/") and os.path.isdir(path) and any(
                not entry.startswith(".") for entry in os.listdir(path)):
            found.append(name)
        elif not name.endswith("/") and os.path.isfile(path):
            found.append(name)
    return found


def resumes(cfg: CfgNode, output_dir: str) -> bool:
    """Whether training continues the run in output_dir (AUTO_RESUME and its checkpoint.pth)."""
    return bool(cfg.AUTO_RESUME) and os.path.isfile(os.path.join(output_dir, RESUME_CHECKPOINT))


def refusal_message(cfg: CfgNode, output_dir: str) -> str | None:
    """Why a new training run must not start in output_dir, or None when it may."""
    found = earlier_run_outputs(output_dir)
    if not found or resumes(cfg, output_dir):
        return None
    resume = ("resume it with AUTO_RESUME True, or start "
              if RESUME_CHECKPOINT in found else "start ")
    return (f"'{output_dir}' holds an earlier run ({', '.join(found)}) that a new run would "
            f"overwrite: {resume}a new one in another folder (--model-dir DIR, or OUTPUT_DIR "
            f"DIR), or here with tools/train.py --overwrite, which first moves those files "
            f"into {PREVIOUS_RUN_PREFIX}<time>/")


def _unused_path(base: str) -> str:
    path, number = base, 0
    while os.path.exists(path):
        number += 1
        path = f"{base}-{number}"
    return path


def move_earlier_run_aside(output_dir: str) -> str | None:
    """Move the RUN_OUTPUTS in output_dir, and the configs they were trained with, into a new
    <output_dir>/previous-<time>/ folder; returns it (None when there was nothing to move)."""
    found = earlier_run_outputs(output_dir)
    if not found:
        return None
    configs = sorted(path.name for path in Path(output_dir).glob("*_config.yaml"))
    folder = _unused_path(os.path.join(output_dir, PREVIOUS_RUN_PREFIX + current_timestamp()))
    os.makedirs(folder)
    for name in [name.rstrip("/") for name in found] + configs:
        os.replace(os.path.join(output_dir, name), os.path.join(folder, name))
    return folder


def guard_output_dir(cfg: CfgNode, output_dir: str, overwrite: bool = False) -> str | None:
    """Refuse (RunFolderError) to start a training run over an earlier run's files, unless it
    resumes that run; with overwrite, move those files aside instead and return their new folder.

    Rank 0 decides. Inside an open process group (tools/train.py opens it first) every process
    gets its verdict and all stop together; a process outside one leaves the decision to rank 0,
    whose failure makes torchrun stop the others.
    """
    verdict = None
    if is_main_process():
        verdict = refusal_message(cfg, output_dir)
        if verdict and overwrite:
            verdict = None
    if dist.is_available() and dist.is_initialized():
        verdict = broadcast_from_main(verdict)
    if verdict:
        raise RunFolderError(verdict)
    if overwrite and is_main_process() and not resumes(cfg, output_dir):
        return move_earlier_run_aside(output_dir)
    return None


def _claim_log_file(cfg: CfgNode, cfg_path: str, phase: str) -> RunPaths:
    """Run paths whose log file this call created (empty): two runs started in the same second
    get different names, '<stem>_<time>_<phase>.log' and '<stem>_<time>-1_<phase>.log'."""
    base = current_timestamp()
    number = 0
    while True:
        paths = make_run_paths(cfg, cfg_path, phase, f"{base}-{number}" if number else base)
        os.makedirs(os.path.dirname(paths.log_file), exist_ok=True)
        try:
            os.close(os.open(paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return paths
        except FileExistsError:
            number += 1


def create_run(cfg: CfgNode, cfg_path: str, phase: str, overwrite: bool = False) -> RunPaths:
    """Create the run folders, start logging into the run log and save the resolved config.

    A training phase ('train', 'demo') first checks the output folder (guard_output_dir): it
    does not start over an earlier run's checkpoints and results unless it resumes them or
    overwrite moves them aside. Temporary files that killed writes left in the folder and its
    results/ are removed. Under torchrun only rank 0 writes; the other processes print warnings
    and errors only, so the console shows one log.
    """
    paths = make_run_paths(cfg, cfg_path, phase)
    moved = None
    if phase in TRAINING_PHASES:
        moved = guard_output_dir(cfg, paths.output_dir, overwrite)
    if not is_main_process():
        setup_logging(None, level=logging.WARNING)
        return paths
    paths = _claim_log_file(cfg, cfg_path, phase)
    os.makedirs(paths.tensorboard_dir, exist_ok=True)
    setup_logging(paths.log_file)
    if moved:
        logger.info("moved the earlier run's files in %s into %s", paths.output_dir, moved)
    for folder in (paths.output_dir, os.path.join(paths.output_dir, "results")):
        remove_stale_temporaries(folder)
    config_file = os.path.join(paths.output_dir, f"{config_stem(cfg_path)}_{phase}_config.yaml")
    with atomic_write(config_file, "w") as handle:
        handle.write(cfg.dump())
    logger.info("run folder %s, log %s, tensorboard %s", paths.output_dir, paths.log_file,
                paths.tensorboard_dir)
    return paths
