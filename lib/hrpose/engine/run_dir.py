"""Run folders and logging: output/<dataset>/<model>/<cfg stem>/, the run log and tensorboard dir."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from yacs.config import CfgNode

from .distributed import is_main_process

LOG_FORMAT = "%(asctime)-15s %(message)s"
_HANDLER_MARK = "_hrpose_run_handler"


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


def make_run_paths(cfg: CfgNode, cfg_path: str, phase: str, timestamp: str | None = None) -> RunPaths:
    """Compute (without creating) the folders of a run, as the originals lay them out."""
    timestamp = timestamp or time.strftime("%Y-%m-%d-%H-%M")
    stem = config_stem(cfg_path)
    relative = Path(cfg.DATASET.DATASET) / cfg.MODEL.NAME
    output_dir = Path(cfg.OUTPUT_DIR) / relative / stem
    return RunPaths(
        output_dir=str(output_dir),
        log_file=str(output_dir / f"{stem}_{timestamp}_{phase}.log"),
        tensorboard_dir=str(Path(cfg.LOG_DIR) / relative / f"{stem}_{timestamp}"),
    )


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    """Send hrpose log records to the console and, if given, to log_file; safe to call repeatedly."""
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


def create_run(cfg: CfgNode, cfg_path: str, phase: str) -> RunPaths:
    """Create the run folders, start logging into the run log and save the resolved config.

    Under torchrun only rank 0 does so; the other processes write nothing and print warnings
    and errors only, so the console shows one log.
    """
    paths = make_run_paths(cfg, cfg_path, phase)
    if not is_main_process():
        setup_logging(None, level=logging.WARNING)
        return paths
    os.makedirs(paths.output_dir, exist_ok=True)
    os.makedirs(paths.tensorboard_dir, exist_ok=True)
    setup_logging(paths.log_file)
    config_file = os.path.join(paths.output_dir, f"{config_stem(cfg_path)}_{phase}_config.yaml")
    temporary = config_file + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(cfg.dump())
    os.replace(temporary, config_file)
    logging.getLogger(__name__).info("run folder %s, log %s, tensorboard %s",
                                     paths.output_dir, paths.log_file, paths.tensorboard_dir)
    return paths
