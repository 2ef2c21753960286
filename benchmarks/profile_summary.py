"""Summarise a py-spy raw profile (collapsed stacks, ``run.py --py-spy``) as tables.

Prints the functions with the most samples on CPU *inclusive* (on the stack) and *self* (at
the top), and the share of samples by component (kopf, our code, pydantic, azure-core, aiohttp,
asyncio, json, ...), for the benchmark's README.

Run:  .venv/bin/python benchmarks/profile_summary.py benchmarks/results/profile-phase2.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

COMPONENTS = [
    ("batchcert", re.compile(r"\(batchcert/")),
    ("kopf", re.compile(r"\(kopf/")),
    ("pydantic", re.compile(r"\(pydantic")),
    ("azure", re.compile(r"\(azure/")),
    ("aiohttp", re.compile(r"\((aiohttp|yarl|multidict)/")),
    ("asyncio", re.compile(r"\(asyncio/")),
    ("json", re.compile(r"\(json/")),
    ("ssl", re.compile(r"\(ssl\.py")),
    ("logging", re.compile(r"\(logging/")),
]


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (path/to/file.py)``: one row per function."""
    return re.sub(r":\d+\)$", ")", frame)


def component(frame: str) -> str:
    for name, pattern in COMPONENTS:
        if pattern.search(frame):
            return name
    return "other"


def summarise(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        self_[frames[-1]] += count
        by_component[component(frames[-1])] += count
    out = [f"{path.name}: {total} samples on CPU\n"]
    out.append("\n| component (self time) | samples | % |\n|---|---|---|\n")
    for name, count in by_component.most_common():
        out.append(f"| {name} | {count} | {count / total * 100:.1f} |\n")
    out.append("\n| function (inclusive) | samples | % |\n|---|---|---|\n")
    for name, count in inclusive.most_common(top):
        out.append(f"| `{name}` | {count} | {count / total * 100:.1f} |\n")
    out.append("\n| function (self) | samples | % |\n|---|---|---|\n")
    for name, count in self_.most_common(top):
        out.append(f"| `{name}` | {count} | {count / total * 100:.1f} |\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
