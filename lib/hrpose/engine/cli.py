"""Shared command-line plumbing of the tools: arguments, config loading, one-line errors."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from types import TracebackType
from typing import Callable, NoReturn

from ..config import ConfigError, get_default_config, update_config
from ..config.update import COMMAND_LINE_SOURCE
from ..errors import HrposeError
from ..utils.allocator import reuse_freed_memory
from ..utils.paths import blocking_file, is_same_path

# The folder options, each with the originals' spelling as its alias, and the config keys they set.
FOLDER_OPTIONS = {"--model-dir": ("--modelDir", "OUTPUT_DIR"),
                  "--log-dir": ("--logDir", "LOG_DIR"),
                  "--data-dir": ("--dataDir", "DATA_DIR")}
# Every spelling of a folder option -> its kebab-case name.
FOLDER_OPTION_NAMES = {spelling: name for name, (alias, _) in FOLDER_OPTIONS.items()
                       for spelling in (name, alias)}


def add_option(parser, name: str, *aliases: str, **settings) -> argparse.Action:
    """The option name (kebab-case) and, for old command lines, its aliases (the originals' or
    hrpose's earlier spellings): same destination, value and checks, left out of --help's list
    and named in the option's help instead. parser may be an argument group."""
    if aliases and settings.get("help") not in (None, argparse.SUPPRESS):
        settings["help"] += f" (alias {', '.join(aliases)})"
    action = parser.add_argument(name, **settings)
    alias_settings = {key: value for key, value in settings.items()
                      if key not in ("help", "default", "required", "metavar")}
    for alias in aliases:
        parser.add_argument(alias, **alias_settings, dest=action.dest,
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return action


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--cfg FILE, the folder options, and trailing KEY VALUE overrides."""
    parser.add_argument("--cfg", required=True, help="experiment YAML file")
    for name, (alias, key) in FOLDER_OPTIONS.items():
        add_option(parser, name, alias, default="", metavar="DIR", help=f"overrides {key}")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. TEST.MODEL_FILE m.pth; "
                             "the folder options may also stand among them")


def _split_folder_options(tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """The overrides without the folder options, and those options' values.

    argparse.REMAINDER hands over everything after the first override, folder options
    included, so they are picked out here wherever they stand (``--model-dir X``,
    ``--modelDir=X``); the values are keyed by the kebab-case name.
    """
    overrides: list[str] = []
    folders: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        option, has_value, value = tokens[index].partition("=")
        if option in FOLDER_OPTION_NAMES:
            if not has_value:
                if index + 1 >= len(tokens):
                    raise ConfigError(f"option {option} {COMMAND_LINE_SOURCE} needs a folder")
                index += 1
                value = tokens[index]
            folders[FOLDER_OPTION_NAMES[option]] = value
        else:
            overrides.append(tokens[index])
        index += 1
    return overrides, folders


def config_from_args(args: argparse.Namespace):
    """The frozen config: defaults, then --cfg, then the folder options and KEY VALUE overrides."""
    opts, late_folders = _split_folder_options(list(args.opts or []))
    folders = {"--model-dir": args.model_dir, "--log-dir": args.log_dir,
               "--data-dir": args.data_dir}
    folders.update(late_folders)
    for option, folder in folders.items():
        if folder:
            opts += [FOLDER_OPTIONS[option][1], repr(folder)]
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


# Names the library's writers give the file they write; see path_being_written.
WRITTEN_PATH_NAMES = ("path", "target")
FULL_DISK_REASONS = {errno.ENOSPC: "no space left on device"}
if hasattr(errno, "EDQUOT"):  # not on Windows
    FULL_DISK_REASONS[errno.EDQUOT] = "disk quota exceeded"


def is_temporary_file(path: str) -> bool:
    """Whether path is named like the temporary files hrpose writes before renaming them into
    place: hidden (".tmp-x.pth", ".name.x.tmp", ".stem.partial.mp4") or ending in ".tmp"."""
    name = os.path.basename(path)
    return name.startswith(".") or name.endswith(".tmp")


def path_being_written(error: OSError) -> str | None:
    """The file an OSError happened on, as the user knows it: the error's own file name, else
    the path (or target) argument of the innermost hrpose function it passed through; a
    temporary file is passed over for the file it was to become.

    write() and fsync() on an open file raise OSErrors without a file name, and the atomic
    writers' temporary file is gone by the time the error is reported.
    """
    candidates = [os.fsdecode(error.filename)] if error.filename is not None else []
    frames = []
    trace: TracebackType | None = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    for frame in reversed(frames):  # innermost first
        if not frame.f_globals.get("__name__", "").startswith("hrpose."):
            continue
        for name in WRITTEN_PATH_NAMES:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and os.fsdecode(value):
                candidates.append(os.fsdecode(value))
    named = [path for path in candidates if not is_temporary_file(path)]
    return (named or candidates or [None])[0]


def _full_disk_message(error: OSError) -> str:
    path = path_being_written(error)
    where = f" writing '{path}'" if path else " writing a file"
    return (f"{FULL_DISK_REASONS[error.errno]}{where}; free some space and run again "
            f"(files written before are kept)")


def _blocked_path_message(path: str) -> str | None:
    """The message for a path that cannot be made a folder (or a file in one) because a file is
    in the way; None when no file is in the way."""
    blocker = blocking_file(path)
    if blocker is None:
        return None
    if is_same_path(blocker, path):
        return f"cannot create the folder '{path}': it is a file, expected a folder"
    return f"cannot write '{path}': '{blocker}' is a file, not a folder"


def describe_os_error(error: OSError) -> str | None:
    """One line for an OSError caused by the user's paths or disk: which file, what was expected
    or what went wrong; None for a system error that names no file (a bug, not bad input)."""
    if error.errno in FULL_DISK_REASONS:
        return _full_disk_message(error)
    if error.filename is None:
        # Raised with a message of its own ("could not write image 'x'"): it names the file.
        if error.errno is None or isinstance(error, FileNotFoundError):
            return original_message(error) or None
        return None
    path, other = os.fsdecode(error.filename), error.filename2
    if isinstance(error, IsADirectoryError):
        # os.replace(temporary, target) names the target second.
        return f"'{os.fsdecode(other) if other is not None else path}' is a folder, expected a file"
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        message = _blocked_path_message(path)
        if message is not None:
            return message
    if error.errno == errno.EROFS:
        return f"cannot write '{path}': the file system is read-only"
    reason = (error.strerror or type(error).__name__).lower()
    second = f" -> '{os.fsdecode(other)}'" if other is not None else ""
    return f"{reason}: '{path}'{second}"


def _stop(message: str) -> NoReturn:
    logging.getLogger("hrpose").debug("stopping", exc_info=True)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's main; bad input (HrposeError, or an OSError on a file the user named: a file
    where a folder should be, a missing file, a full disk) ends with one 'error:' line on stderr
    and exit status 2."""
    reuse_freed_memory()
    # A log record that cannot be written (a full disk) must not print a traceback of its own;
    # the error that stops the tool is reported below.
    raise_logging_errors, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        main()
    except HrposeError as error:
        _stop(original_message(error))
    except OSError as error:
        message = describe_os_error(error)
        if message is None:
            raise
        _stop(message)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        logging.raiseExceptions = raise_logging_errors
