"""Every key of the default config tree is read somewhere in the library or the tools."""

import re

from hrpose.config import get_default_config
from hrpose.config.model_extras import MODEL_EXTRAS


def leaf_keys(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_every_config_key_is_read(repo_root):
    sources = [p.read_text() for p in (repo_root / "lib" / "hrpose").rglob("*.py")
               if "config" not in p.parts]
    sources += [p.read_text() for p in (repo_root / "tools").glob("*.py")]
    text = "\n".join(sources)
    keys = set(leaf_keys(get_default_config()))
    for make_extra in MODEL_EXTRAS.values():
        keys |= {f"MODEL.EXTRA.{k}" for k in leaf_keys(make_extra())}
    unread = sorted(k for k in keys
                    if not re.search(r"[.\[\"']" + re.escape(k.split(".")[-1]) + r"\b", text))
    assert not unread, f"config keys that no code reads: {unread}"
