"""Shared command-line plumbing of the tools: arguments, config loading, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from ..config import ConfigError, get_default_config, update_config
from ..config.update import COMMAND_LINE_SOURCE
from ..errors import HrposeError
from ..utils.allocator import reuse_freed_memory


# The originals' folder options and the config keys they set.
FOLDER_OPTIONS = {"--modelDir": "OUTPUT_DIR", "--logDir": "LOG_DIR", "--dataDir": "DATA_DIR"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--cfg FILE, the originals' folder options, and trailing KEY VALUE overrides."""
    parser.add_argument("--cfg", required=True, help="experiment YAML file")
    parser.add_argument("--modelDir", default="", help="overrides OUTPUT_DIR")
    parser.add_argument("--logDir", default="", help="overrides LOG_DIR")
    parser.add_argument("--dataDir", default="", help="overrides DATA_DIR")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. TEST.MODEL_FILE m.pth; "
                             "the folder options may also stand among them")


def _split_folder_options(tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """The overrides without the folder options, and those options' values.

    argparse.REMAINDER hands over everything after the first override, folder options
    included, so they are picked out here wherever they stand (``--modelDir X`` or
    ``--modelDir=X``).
    """
    overrides: list[str] = []
    folders: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        option, has_value, value = tokens[index].partition("=")
        if option in FOLDER_OPTIONS:
            if not has_value:
                if index + 1 >= len(tokens):
                    raise ConfigError(f"option {option} {COMMAND_LINE_SOURCE} needs a folder")
                index += 1
                value = tokens[index]
            folders[option] = value
        else:
            overrides.append(tokens[index])
        index += 1
    return overrides, folders


def config_from_args(args: argparse.Namespace):
    """The frozen config: defaults, then --cfg, then the folder options and KEY VALUE overrides."""
    opts, late_folders = _split_folder_options(list(args.opts or []))
    folders = {"--modelDir": args.modelDir, "--logDir": args.logDir, "--dataDir": args.dataDir}
    folders.update(late_folders)
    for option, folder in folders.items():
        if folder:
            opts += [FOLDER_OPTIONS[option], repr(folder)]
    return update_config(get_default_config(), argparse.Namespace(cfg=args.cfg, opts=opts))


def original_message(error: BaseException) -> str:
    """The message of an error as raised; for one that PyTorch re-raised from a DataLoader worker
    ("Caught X in DataLoader worker process N." and the worker's traceback), the message the
    worker raised, which ends that traceback as "module.X: message"."""
    text = str(error)
    if not (text.startswith("Caught ") and "in DataLoader worker process" in text):
        return text
    name = type(error).__name__
    lines = text.rstrip("\n").splitlines()
    for start in range(len(lines) - 1, 0, -1):
        label, colon, message = lines[start].partition(": ")
        if colon and not label.startswith(" ") and label.split(".")[-1] == name:
            return "\n".join([message, *lines[start + 1:]])
    return text


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's main; bad input ends with one 'error:' line on stderr and exit status 2."""
    reuse_freed_memory()
    try:
        main()
    except (HrposeError, FileNotFoundError) as error:
        logging.getLogger("hrpose").debug("stopping", exc_info=True)
        print(f"error: {original_message(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
