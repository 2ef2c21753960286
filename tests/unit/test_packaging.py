"""What a clean machine installs: plain index pins, and an image built only from the repository.

Covers: every constraint is a plain ``name==version`` pin (a ``name @ file://`` line installs
only on the machine that wrote it); ``tools/pins.py`` refuses such lines; every dependency the two
distributions declare is pinned; the Dockerfile installs from the same constraints, copies only
files the repository contains and .dockerignore admits, and pip-installs nothing but the context.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
import pins  # noqa: E402

CONSTRAINTS = REPO_ROOT / "constraints.txt"


def pinned_names() -> set[str]:
    return {
        pins.normalise(line.split("==")[0])
        for line in CONSTRAINTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def test_every_constraint_is_a_plain_index_pin() -> None:
    assert pins.bad_lines(CONSTRAINTS) == []


@pytest.mark.parametrize(
    "line",
    [
        "azure-mgmt-msi @ file:///tmp/pkgs/azure_mgmt_msi-7.1.0-py3-none-any.whl",
        "-e git+https://github.com/x/y@abc#egg=y",
        "-e /work/main",
        "kopf>=1.45",
        "requests @ https://example.invalid/requests-2.0.tar.gz",
    ],
)
def test_the_pin_check_refuses_lines_a_clean_machine_cannot_install(
    tmp_path: Path, line: str
) -> None:
    path = tmp_path / "constraints.txt"
    path.write_text(f"# header\naiohttp==3.14.5\n{line}\n")
    assert pins.bad_lines(path) == [line]
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "pins.py"), "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "not a plain index pin" in result.stderr


def test_every_declared_dependency_is_pinned() -> None:
    pinned = pinned_names()
    for pyproject in (REPO_ROOT / "pyproject.toml", REPO_ROOT / "operator" / "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        requirements = list(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for requirement in requirements:
            name = pins.normalise(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
            if name in pins.OWN:
                continue
            assert name in pinned, f"{pyproject.name}: {requirement} has no pin"


def dockerignore_admits(path: str) -> bool:
    admitted = False
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            admitted = negate
    return admitted


def test_the_dockerfile_builds_from_the_repository_and_the_constraints_only() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    lines = text.replace("\\\n", " ").splitlines()
    copies = [line.split() for line in lines if line.startswith("COPY ")]
    sources = [
        w for words in copies if not any(w.startswith("--from") for w in words) for w in words[1:-1]
    ]
    assert "constraints.txt" in sources, "the image must install from the tested pins"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for source in sources:
        assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in tracked), (
            f"COPY {source}: not in the repository"
        )
        assert dockerignore_admits(source.rstrip("/")), f"COPY {source}: .dockerignore excludes it"

    installs = [line for line in lines if line.startswith("RUN ") and "pip install" in line]
    assert installs
    for line in installs:
        command = line[line.index("pip install") :].split("&&")[0].split()
        assert "-c" in command and command[command.index("-c") + 1] == "constraints.txt", line
        targets = [w for w in command[2:] if not w.startswith("-") and w != "constraints.txt"]
        assert targets == ["."], f"the image installs something other than the context: {line}"
