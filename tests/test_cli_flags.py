"""The tools' command-line flags: one kebab-case style, --help for every tool, the originals'
spellings kept as hidden aliases."""

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

TOOLS_DIR = Path(__file__).resolve().parents[1] / "tools"
TOOL_FILES = sorted(path.name for path in TOOLS_DIR.glob("*.py"))
KEBAB_OPTION = re.compile(r"^(-h|--[a-z0-9]+(-[a-z0-9]+)*)$")

# The originals' flag spellings, from their argparse definitions:
# - leoxiaobin/deep-high-resolution-net.pytorch tools/train.py, tools/test.py: --cfg, --modelDir,
#   --logDir, --dataDir (and the unused --prevModelDir, not kept);
# - the same repository's demo/inference.py: --cfg, --videoFile, --outputDir, --inferenceFps,
#   --writeBoxFrames (it writes the frames with the person boxes drawn);
# - the bottom-up repositories' tools/inference_demo.py (HRNet-Bottom-Up, DEKR): --cfg,
#   --videoFile, --outputDir, --inferenceFps, --visthre.
# Each maps to the kebab-case flag of the same meaning here.
FOLDER_ALIASES = {"--modelDir": "--model-dir", "--logDir": "--log-dir", "--dataDir": "--data-dir"}
ORIGINAL_ALIASES = {
    "train.py": FOLDER_ALIASES,
    "valid.py": FOLDER_ALIASES,
    "inference_demo.py": {**FOLDER_ALIASES, "--videoFile": "--video-file",
                          "--outputDir": "--output-dir", "--inferenceFps": "--inference-fps",
                          "--visthre": "--vis-threshold", "--writeBoxFrames": "--write-frames"},
}
# hrpose's own earlier spellings, kept so that existing command lines keep working.
EARLIER_ALIASES = {
    "inference_demo.py": {"--box-thre": "--box-threshold"},
    "plot_coco.py": {"--score-thre": "--score-threshold",
                     "--keypoint-thre": "--keypoint-threshold"},
}
ALIAS_CASES = [(tool, alias, name) for table in (ORIGINAL_ALIASES, EARLIER_ALIASES)
               for tool, aliases in table.items() for alias, name in aliases.items()]
# Arguments each tool needs besides the flag under test, and a value per flag.
REQUIRED = {"inference_demo.py": ["--cfg", "exp.yaml", "--image", "x.jpg"],
            "plot_coco.py": ["--results", "r.json", "--annotations", "a.json", "--images", "i",
                             "--output", "o"]}
DEFAULT_REQUIRED = ["--cfg", "exp.yaml"]
VALUES = {"--video-file": "in.mp4", "--output-dir": "out", "--inference-fps": "5",
          "--vis-threshold": "0.25", "--box-threshold": "0.75", "--score-threshold": "0.4",
          "--keypoint-threshold": "0.35", "--model-dir": "runs", "--log-dir": "logs",
          "--data-dir": "data"}


def build_parser(tool: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"tool_{Path(tool).stem}", TOOLS_DIR / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def visible_options(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions if action.help is not argparse.SUPPRESS
            for option in action.option_strings]


def parse(tool: str, flag: str, name: str) -> argparse.Namespace:
    """The arguments of the tool with flag (the name or an alias of it) given a value."""
    required = REQUIRED.get(tool, DEFAULT_REQUIRED)
    if name == "--video-file":   # the input is one of a group: the video replaces the image
        required = ["--cfg", "exp.yaml"]
    value = [VALUES[name]] if name in VALUES else []
    return build_parser(tool).parse_args([*required, flag, *value])


def test_every_tool_has_a_parser():
    assert {"train.py", "valid.py", "inference_demo.py", "plot_coco.py"} <= set(TOOL_FILES)


@pytest.mark.parametrize("tool", TOOL_FILES)
def test_help_parses_and_lists_only_kebab_case_flags(tool, capsys):
    parser = build_parser(tool)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out
    odd = [option for option in visible_options(parser) if not KEBAB_OPTION.match(option)]
    assert not odd, f"{tool}: flags outside the kebab-case style: {odd}"


@pytest.mark.parametrize("tool, alias, name", ALIAS_CASES)
def test_alias_maps_to_the_same_destination(tool, alias, name):
    parser = build_parser(tool)
    options = parser._option_string_actions
    assert alias in options and name in options
    assert options[alias].dest == options[name].dest
    assert options[alias].help is argparse.SUPPRESS   # left out of --help's list ...
    assert alias in options[name].help                # ... and named in the flag's help
    assert parse(tool, alias, name) == parse(tool, name, name)
    assert getattr(parse(tool, alias, name), options[name].dest) != options[name].default


@pytest.mark.parametrize("tool", sorted(ORIGINAL_ALIASES))
def test_help_does_not_list_the_aliases(tool):
    shown = visible_options(build_parser(tool))
    assert not set(ORIGINAL_ALIASES[tool]) & set(shown)
