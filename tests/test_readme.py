"""What the README promises a new user: every shipped checkpoint in its table, and how to install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from probseg.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_checkpoint_table_lists_every_registered_checkpoint() -> None:
    names = re.findall(r"^\| `([\w-]+)` \| `[\w-]+` \| ", README, flags=re.M)
    assert sorted(names) == sorted(REGISTRY)


def test_the_install_section_gives_a_venv_the_cpu_only_torch_with_the_pin_and_the_size() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("torch"))
    assert pin == "torch>=2.3,<2.14"
    assert "python3 -m venv .venv" in README
    assert f'--index-url https://download.pytorch.org/whl/cpu "{pin}"' in README
    assert re.search(r"the install is [\d.]+ GB", README)
    assert re.search(r"The main job \(`probseg-simulate\s+--policy best-of-k`, 1,000 sessions\) takes about \d+ s", README)
