"""Write constraints.txt from a venv: plain ``name==version`` index pins, nothing else.

``pip freeze`` prints what a package was installed *from*: ``name @ file:///tmp/x.whl`` for a local
wheel, ``-e`` lines for editable checkouts, VCS URLs. Such a line installs only on the machine that
wrote it, so a clean machine (and CI anywhere else) cannot install the project. This reads the
venv's installed distributions instead and pins each by name and version; the project's own
distributions and pip's bootstrap packages are left out. A distribution that came from a direct
reference is pinned by version all the same and named on stderr, so whoever regenerates sees it.

Usage: ``python tools/pins.py freeze --python .venv/bin/python > constraints.txt``
       ``python tools/pins.py check constraints.txt``  (exit 1 on any line that is not a plain pin)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

OWN = {"batchcert-operator", "batchcert-devtools"}
BOOTSTRAP = {"pip", "setuptools", "wheel"}
PLAIN_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
HEADER = (
    "# Pins for every dependency of batchcert-operator[test,bench] and batchcert-devtools, so every\n"
    "# machine installs what was tested. Plain index pins only (tests/unit/test_packaging.py).\n"
    "# Regenerate from a working venv with: make constraints\n"
)

_LIST = """
import importlib.metadata as m, json
out = []
for d in m.distributions():
    direct = d.read_text("direct_url.json")
    out.append([d.metadata["Name"], d.version, direct])
print(json.dumps(out))
"""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def freeze(python: str) -> int:
    listing = json.loads(subprocess.check_output([python, "-c", _LIST], text=True))
    pins: dict[str, str] = {}
    for name, version, direct in listing:
        key = normalise(name)
        if key in OWN or key in BOOTSTRAP:
            continue
        if direct:
            url = json.loads(direct).get("url", "?")
            print(
                f"pins: {name} was installed from {url}; pinned as {name}=={version}, "
                "which must exist on the package index",
                file=sys.stderr,
            )
        pins[key] = f"{name}=={version}"
    sys.stdout.write(HEADER + "".join(f"{pins[k]}\n" for k in sorted(pins)))
    return 0


def bad_lines(path: Path) -> list[str]:
    """Every line that is neither blank, a comment, nor a plain ``name==version`` pin."""
    bad = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#") and not PLAIN_PIN.match(text):
            bad.append(line)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    f = sub.add_parser("freeze")
    f.add_argument("--python", default=sys.executable)
    c = sub.add_parser("check")
    c.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.action == "freeze":
        return freeze(args.python)
    bad = bad_lines(args.path)
    for line in bad:
        print(f"{args.path}: not a plain index pin: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
