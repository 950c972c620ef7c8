"""Every repository path that the code, tests, benchmarks, docs or README cite exists."""

import itertools
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Where citations are read. tests/fixtures holds verbatim copies of the originals' files.
SCANNED = ["README.md", "Makefile", "models/README.md", "data/README.md", "docs/*.md",
           "lib/**/*.py", "lib/**/*.pyx", "tools/*", "tests/*.py", "bench/*.py",
           "experiments/**/*.yaml", "setup.py", "requirements.txt"]

# A path from the repository root: lib/hrpose/..., docs/..., and the other top-level folders.
ROOT_PATH = re.compile(r"(?<![\w/.~-])((?:lib/hrpose|docs|experiments|bench|tests|tools)"
                       r"/[\w./{},*-]*[\w*}/])")
# A module path relative to the package (``postprocess/ae_grouping.py``).
PACKAGE_PATH = re.compile(r"(?<![\w/.-])((?:apis|codecs|config|datasets|engine|evaluation|"
                          r"losses|models|nms|postprocess|utils)/[\w/]+\.pyx?)\b")
# Design notes that live outside the repository (the folder beside a developer's checkout): a
# citation of one can never be followed. Spelt in pieces so this file does not cite them itself.
OUTSIDE_FOLDER = "refer" + "ence"
OUTSIDE_NOTE_NAMES = ("DESIGN", "topdown", "bottomup", "hae_hrnext_mmpose", "crowdpose_protocol",
                      "published_results", "user_needs")
OUTSIDE_NOTES = re.compile(rf"\b({OUTSIDE_FOLDER}/\w+\.md|(?:{'|'.join(OUTSIDE_NOTE_NAMES)})\.md)")

# Files of the original repositories, cited (with their repository named beside them) as the
# source of an expectation or of a deviation; they are not part of this repository.
ORIGINALS_FILES = {
    "tools/test.py",  # HRNet's test script
    "tools/torchstat",  # HRNeXt's vendored torchstat
    "tools/torchstat/compute_flops.py",
    "tools/crowdpose_concat_train_val.py",  # HigherHRNet's CrowdPose helper
    "experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml",  # HigherHRNet's folder name
}
# Files the build writes (git-ignored), which a fresh checkout does not have yet.
GENERATED = {"lib/hrpose/nms/_oks_nms.c"}
# Placeholders in usage text, and the modules tests/test_layers.py plants in a temporary package.
PLACEHOLDERS = {"tools/{tool}", "experiments/....yaml", "losses/a.py", "losses/b.py",
                "losses/c.py", "losses/d.py"}


def scanned_files() -> list[Path]:
    files = set()
    for pattern in SCANNED:
        files.update(path for path in REPO_ROOT.glob(pattern)
                     if path.is_file() and "fixtures" not in path.parts
                     and "__pycache__" not in path.parts and path.suffix != ".so")
    files.discard(Path(__file__).resolve())
    return sorted(files)


def expand_braces(path: str) -> list[str]:
    """'a/{b,c}/d' -> ['a/b/d', 'a/c/d'] (shell brace expansion, as the docs write sets)."""
    parts = re.split(r"(\{[^{}]*\})", path)
    choices = [part[1:-1].split(",") if part.startswith("{") else [part] for part in parts]
    return ["".join(combination) for combination in itertools.product(*choices)]


def exists(path: str, base: Path) -> bool:
    for candidate in expand_braces(path.rstrip("/")):
        if "*" in candidate:
            if not any(base.glob(candidate)):
                return False
        elif not (base / candidate).exists():
            return False
    return True


def citations(text: str):
    """(path, base folder) pairs cited in a file's text."""
    for match in ROOT_PATH.finditer(text):
        path = match.group(1).rstrip(".,")
        if path not in ORIGINALS_FILES | PLACEHOLDERS | GENERATED:
            yield path, REPO_ROOT
    for match in PACKAGE_PATH.finditer(text):
        if match.group(1) not in PLACEHOLDERS:
            yield match.group(1), REPO_ROOT / "lib" / "hrpose"


@pytest.mark.parametrize("path", scanned_files(), ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_cited_path_exists(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    missing = sorted({cited for cited, base in citations(text) if not exists(cited, base)})
    assert not missing, f"{path.relative_to(REPO_ROOT)} cites paths that do not exist: {missing}"
    outside = sorted(set(OUTSIDE_NOTES.findall(text)))
    assert not outside, (f"{path.relative_to(REPO_ROOT)} cites design notes that are not in the "
                         f"repository: {outside} (cite docs/ instead)")


def test_the_checker_finds_missing_paths_and_outside_notes():
    outside_note = f"{OUTSIDE_FOLDER}/{OUTSIDE_NOTE_NAMES[2]}.md"
    text = ("see lib/hrpose/nowhere.py, docs/{design,nowhere}.md and postprocess/nothing.py; "
            + outside_note)
    missing = sorted(cited for cited, base in citations(text) if not exists(cited, base))
    assert missing == ["docs/{design,nowhere}.md", "lib/hrpose/nowhere.py",
                       "postprocess/nothing.py"]
    assert OUTSIDE_NOTES.findall(text) == [outside_note]
    present = "lib/hrpose/config/default.py, experiments/{coco,mpii}/hrnet/*.yaml"
    assert all(exists(cited, base) for cited, base in citations(present))
