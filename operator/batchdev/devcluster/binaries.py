"""The control-plane binaries: which versions are pinned, where they are cached, how they are built.

The pinned versions live in exactly one place, the Go modules under ``k8s/`` (package data) (the
``k8s.io/kubernetes`` and ``go.etcd.io/etcd/server/v3`` requirements); this module reads them
rather than repeating them. Binaries are built from the Go module proxy into
``${XDG_CACHE_HOME:-~/.cache}/batchcert/k8s/<kubernetes-version>/`` and never into the repository.

Another Kubernetes release can be selected (``BATCHCERT_KUBERNETES_VERSION=v1.30.14`` or
``batchcert-dev cluster build|up --kubernetes-version v1.30.14``): its two Go modules are generated
by ``k8s/pin.sh --out`` (from that release's own go.mod, with the etcd release it requires) into
``<cache>/<version>/modules/`` and built from there; the committed modules stay the default.

Invariants:

* A binary appears in the cache only complete: it is built to a temporary name and renamed into
  place, so an interrupted build is never mistaken for a finished one.
* ``versions.json`` beside the binaries records what was built; a present, matching binary is
  never rebuilt.
* Two concurrent builds of one version (two ``make test`` runs) serialise on a lock file; the
  second finds the first's result and builds nothing.
* Every failure names its cause and the log file to read.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from batchdev.devcluster.errors import (
    BinariesMissingError,
    BuildFailedError,
    DevClusterError,
    GoToolchainMissingError,
)

# The Go modules that pin the control plane ship inside this package (package data), so an
# installed batchcert-devtools builds the same binaries as a checkout does.
TOOLS_DIR = Path(__file__).resolve().parent / "k8s"

KUBERNETES_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KUBE_APISERVER_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"

MANIFEST_NAME = "versions.json"
PIN_SCRIPT = "pin.sh"
# Selects the Kubernetes release the dev cluster and the test harness run (default: the pin).
KUBERNETES_VERSION_ENV = "BATCHCERT_KUBERNETES_VERSION"
# Written beside the generated modules once pin.sh has finished, so a half-generated directory
# (an interrupted download) is generated again rather than built.
_GENERATED_MARKER = ".generated"
_RELEASE = re.compile(r"v1\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class PinnedVersions:
    """The release of each component the repository pins (``vX.Y.Z``)."""

    kubernetes: str
    etcd: str


def parse_required_version(gomod_text: str, module: str) -> str:
    """The version ``module`` is required at in a go.mod text (single-line or block form)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    match = pattern.search(gomod_text)
    if match is None:
        raise DevClusterError(f"go.mod does not require {module}")
    return match.group(1)


def read_pinned_versions(tools_dir: Path = TOOLS_DIR) -> PinnedVersions:
    """Read the pinned versions from ``k8s/{kube-apiserver,etcd}/go.mod``."""
    try:
        api_mod = (tools_dir / "kube-apiserver" / "go.mod").read_text()
        etcd_mod = (tools_dir / "etcd" / "go.mod").read_text()
    except FileNotFoundError as exc:
        raise DevClusterError(
            f"{exc.filename} is missing: the control plane is built from the Go modules in "
            f"{tools_dir}, which exist only in a source checkout of batchcert-operator"
        ) from exc
    return PinnedVersions(
        kubernetes=parse_required_version(api_mod, KUBERNETES_MODULE),
        etcd=parse_required_version(etcd_mod, ETCD_MODULE),
    )


def parse_kubernetes_version(text: str) -> str:
    """``"v1.30.14"`` (or ``"1.30.14"``) → ``"v1.30.14"``; anything else is an error."""
    version = text.strip()
    version = version if version.startswith("v") else f"v{version}"
    if _RELEASE.fullmatch(version) is None:
        raise DevClusterError(
            f"not a Kubernetes release version: {text!r} (expected vX.Y.Z, e.g. v1.30.14)"
        )
    return version


def requested_kubernetes_version(env: Mapping[str, str] = os.environ) -> str | None:
    """The release ``BATCHCERT_KUBERNETES_VERSION`` selects, or None for the pinned default."""
    value = env.get(KUBERNETES_VERSION_ENV, "").strip()
    return parse_kubernetes_version(value) if value else None


def selected_kubernetes_version(
    env: Mapping[str, str] = os.environ, tools_dir: Path = TOOLS_DIR
) -> str:
    """The release the dev cluster runs: ``BATCHCERT_KUBERNETES_VERSION``, else the pin."""
    return requested_kubernetes_version(env) or read_pinned_versions(tools_dir).kubernetes


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/batchcert/k8s``: shared by every checkout of one user."""
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batchcert" / "k8s"


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """Where one version's etcd and kube-apiserver live (they may not be built yet).

    ``modules`` holds the two Go modules they are built from (``kube-apiserver/``, ``etcd/``): the
    committed ``k8s/`` for the pinned release, generated ones in the cache for any other.
    """

    directory: Path
    versions: PinnedVersions
    modules: Path = TOOLS_DIR

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST_NAME

    def missing(self) -> list[str]:
        """Names of the binaries that must still be built for these versions."""
        recorded = _read_manifest(self.manifest)
        missing = []
        if not _is_executable(self.kube_apiserver) or recorded.get("kubernetes") != (
            self.versions.kubernetes
        ):
            missing.append("kube-apiserver")
        if not _is_executable(self.etcd) or recorded.get("etcd") != self.versions.etcd:
            missing.append("etcd")
        return missing

    def is_complete(self) -> bool:
        return not self.missing()


def pinned_binaries(
    env: Mapping[str, str] = os.environ, tools_dir: Path = TOOLS_DIR
) -> ControlPlaneBinaries:
    """The cache location of the pinned versions' binaries (built or not)."""
    versions = read_pinned_versions(tools_dir)
    return ControlPlaneBinaries(cache_root(env) / versions.kubernetes, versions, tools_dir)


def generated_modules_dir(kubernetes_version: str, env: Mapping[str, str] = os.environ) -> Path:
    """Where ``pin.sh --out`` writes the Go modules of a release other than the pinned one."""
    return cache_root(env) / kubernetes_version / "modules"


def _modules_generated(modules: Path) -> bool:
    return (modules / _GENERATED_MARKER).is_file()


def _build_command(kubernetes_version: str | None) -> str:
    option = f" --kubernetes-version {kubernetes_version}" if kubernetes_version else ""
    return f"`batchcert-dev cluster build{option}`"


def binaries_for(
    kubernetes_version: str | None = None,
    env: Mapping[str, str] = os.environ,
    tools_dir: Path = TOOLS_DIR,
) -> ControlPlaneBinaries | None:
    """The binaries of ``kubernetes_version`` (default: the setting, else the pin), built or not.

    None when the release is not the pinned one and its modules have not been generated yet (the
    etcd release it needs is read from them).
    """
    version = kubernetes_version or requested_kubernetes_version(env)
    pinned = pinned_binaries(env, tools_dir)
    if version is None or version == pinned.versions.kubernetes:
        return pinned
    modules = generated_modules_dir(version, env)
    if not _modules_generated(modules):
        return None
    return ControlPlaneBinaries(modules.parent, read_pinned_versions(modules), modules)


def require_binaries(
    kubernetes_version: str | None = None, env: Mapping[str, str] = os.environ
) -> ControlPlaneBinaries:
    """The selected version's binaries, or a clear error saying how to build them."""
    version = kubernetes_version or requested_kubernetes_version(env)
    binaries = binaries_for(version, env)
    if binaries is not None and binaries.is_complete():
        return binaries
    if binaries is None:
        what, release, where = "etcd, kube-apiserver", version, cache_root(env) / str(version)
    else:
        what = ", ".join(binaries.missing())
        release, where = binaries.versions.kubernetes, binaries.directory
    raise BinariesMissingError(
        f"the control plane binaries ({what} for Kubernetes {release}) are not built in {where}; "
        f"run {_build_command(version)} (a cold build takes tens of minutes)"
    )


def build_kube_apiserver_ldflags(kubernetes_version: str) -> list[str]:
    """Linker flags that strip the binary and stamp the version ``/version`` reports.

    Without the stamp a module build reports ``v0.0.0-master``; client-go's copy is stamped too so
    the server's own clients identify themselves consistently.
    """
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", kubernetes_version)
    if match is None:
        raise DevClusterError(f"not a Kubernetes release version: {kubernetes_version!r}")
    major, minor = match.groups()
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={kubernetes_version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return flags


@dataclass(frozen=True)
class _Target:
    name: str
    module_dir: Path
    package: str
    ldflags: list[str]


def _targets(binaries: ControlPlaneBinaries) -> dict[str, _Target]:
    return {
        "etcd": _Target("etcd", binaries.modules / "etcd", ".", ["-s", "-w"]),
        "kube-apiserver": _Target(
            "kube-apiserver",
            binaries.modules / "kube-apiserver",
            KUBE_APISERVER_PACKAGE,
            build_kube_apiserver_ldflags(binaries.versions.kubernetes),
        ),
    }


class ConsoleProgress:
    """Progress for a long build: a live line on a terminal, a line every ``interval`` otherwise.

    CI logs get periodic lines instead of thousands of carriage returns, and nothing is silent for
    long enough to look like a hang.
    """

    def __init__(self, stream: IO[str] | None = None, interval: float = 20.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval
        self._last_emit = 0.0
        self._live = False

    def step(self, message: str) -> None:
        self._clear()
        print(message, file=self._stream, flush=True)

    def update(self, message: str) -> None:
        now = time.monotonic()
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r" + message[:width].ljust(width))
            self._stream.flush()
            self._live = True
        elif now - self._last_emit >= self._interval:
            self._last_emit = now
            print(message, file=self._stream, flush=True)

    def _clear(self) -> None:
        if self._live:
            self._stream.write("\n")
            self._live = False


def find_go() -> str:
    """The ``go`` executable, or an error saying what to install."""
    found = shutil.which("go")
    if found is None and _is_executable(Path("/usr/local/go/bin/go")):
        found = "/usr/local/go/bin/go"  # the official tarball's location, often not on PATH
    if found is None:
        raise GoToolchainMissingError(
            "`go` was not found on PATH (nor /usr/local/go/bin/go): the control plane is built "
            "from Go modules. Install Go 1.26 or newer from https://go.dev/dl/ and retry "
            "`batchcert-dev cluster build`."
        )
    return found


def build_binaries(
    kubernetes_version: str | None = None,
    *,
    progress: ConsoleProgress | None = None,
    force: bool = False,
    env: Mapping[str, str] = os.environ,
    tools_dir: Path = TOOLS_DIR,
) -> ControlPlaneBinaries:
    """Build etcd and kube-apiserver into the cache unless already there.

    ``kubernetes_version`` (default: ``BATCHCERT_KUBERNETES_VERSION``, else the pin) other than
    the pinned release first has its Go modules generated by ``pin.sh --out`` into the cache
    (again with ``force``).
    """
    progress = progress or ConsoleProgress()
    version = kubernetes_version or requested_kubernetes_version(env)
    binaries = binaries_for(version, env, tools_dir)
    if not force and binaries is not None and binaries.is_complete():
        progress.step(f"control plane binaries already built in {binaries.directory}")
        return binaries
    go = find_go()
    directory = binaries.directory if binaries is not None else cache_root(env) / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    with _build_lock(directory, progress):
        if binaries is None or (force and binaries.modules != tools_dir):
            assert version is not None  # the pinned release always has its modules
            # Another build may have generated them while this one waited for the lock.
            if force or not _modules_generated(generated_modules_dir(version, env)):
                _generate_modules(go, version, directory, progress, env, tools_dir)
            binaries = binaries_for(version, env, tools_dir)
            assert binaries is not None
        # Another build may have finished while this one waited for the lock.
        todo = ["etcd", "kube-apiserver"] if force else binaries.missing()
        targets = _targets(binaries)
        for name in todo:
            _build_one(go, targets[name], binaries, progress, env)
            _record_built(binaries, name)
    progress.step(f"control plane binaries ready in {binaries.directory}")
    return binaries


def _generate_modules(
    go: str,
    kubernetes_version: str,
    directory: Path,
    progress: ConsoleProgress,
    env: Mapping[str, str],
    tools_dir: Path,
) -> None:
    """``pin.sh --out <directory>/modules <version>``: the release's own modules, in the cache."""
    modules = directory / "modules"
    shutil.rmtree(modules, ignore_errors=True)  # whatever an interrupted run left
    log_path = directory / "pin.log"
    pin_env = dict(env)
    # pin.sh runs `go` from PATH; use the one find_go() chose.
    pin_env["PATH"] = os.pathsep.join([str(Path(go).parent), env.get("PATH", os.defpath)])
    started = time.monotonic()
    downloaded = 0

    def on_line(line: str) -> None:
        nonlocal downloaded
        if line.startswith("go: downloading"):
            downloaded += 1

    def describe() -> str:
        return (
            f"  modules for {kubernetes_version}: {downloaded} modules downloaded, "
            f"{_elapsed(started)}"
        )

    progress.step(
        f"generating the Go modules for Kubernetes {kubernetes_version} in {modules} "
        f"(log: {log_path})"
    )
    argv = ["bash", str(tools_dir / PIN_SCRIPT), "--out", str(modules), kubernetes_version]
    with open(log_path, "w") as log:
        _run_logged(
            argv, directory, pin_env, log, on_line, describe, progress,
            f"generating the modules for Kubernetes {kubernetes_version}", log_path,
        )  # fmt: skip
    (modules / _GENERATED_MARKER).write_text(f"{kubernetes_version}\n")


@contextmanager
def _build_lock(directory: Path, progress: ConsoleProgress) -> Iterator[None]:
    with open(directory / ".build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.step(f"another build of {directory.name} is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class _BuildCounters:
    """What a build has done so far, for its progress line."""

    listed: int = 0
    downloaded: int = 0
    compiled: int = 0
    last: str = ""
    compiling: bool = False


def _build_one(
    go: str,
    target: _Target,
    binaries: ControlPlaneBinaries,
    progress: ConsoleProgress,
    env: Mapping[str, str],
) -> None:
    version = binaries.versions.etcd if target.name == "etcd" else binaries.versions.kubernetes
    log_path = binaries.directory / f"build-{target.name}.log"
    output = binaries.directory / f".{target.name}.partial"
    go_env = dict(env)
    # Static binaries (no libc coupling), and a go.work somewhere above the checkout must not
    # change which modules are built.
    go_env.update({"CGO_ENABLED": "0", "GOWORK": "off"})
    started = time.monotonic()
    counters = _BuildCounters()

    def describe() -> str:
        if not counters.compiling:
            return (
                f"  {target.name}: resolving dependencies, {counters.downloaded} modules "
                f"downloaded, {_elapsed(started)}"
            )
        return (
            f"  {target.name}: compiled {counters.compiled}/{counters.listed} packages, "
            f"{_elapsed(started)} (last: {counters.last})"
        )

    def on_list_line(line: str) -> None:
        if line.startswith("go: downloading"):
            counters.downloaded += 1
        elif line and not line.startswith("go:"):
            counters.listed += 1

    def on_build_line(line: str) -> None:
        if line and not line.startswith(("go:", "#")):
            counters.compiled += 1
            counters.last = line

    progress.step(f"building {target.name} {version} (log: {log_path})")
    with open(log_path, "w") as log:
        # Listing the dependencies first downloads every module and counts the packages, which
        # makes the compile phase's progress meaningful ("compiled 812/2079").
        _run_logged(
            [go, "list", "-deps", target.package],
            target.module_dir, go_env, log, on_list_line, describe, progress,
            f"building {target.name}", log_path,
        )  # fmt: skip
        counters.compiling = True
        # -buildvcs=false: the wrapper modules sit inside this git checkout, and stamping its
        # commit would fail where git distrusts the checkout's owner and would make the binaries
        # differ per commit (they are byte-for-byte reproducible without it).
        build = [go, "build", "-v", "-trimpath", "-buildvcs=false"]
        build += ["-ldflags", " ".join(target.ldflags)]
        _run_logged(
            [*build, "-o", str(output), target.package],
            target.module_dir, go_env, log, on_build_line, describe, progress,
            f"building {target.name}", log_path,
        )  # fmt: skip
    os.replace(output, binaries.directory / target.name)
    size_mb = (binaries.directory / target.name).stat().st_size / 1e6
    progress.step(
        f"built {target.name} {version} in {_elapsed(started)} ({size_mb:.0f} MB; "
        f"{counters.compiled} packages compiled, {counters.downloaded} modules downloaded)"
    )


# Report at least this often while go is silent (a big package or the final link can take
# minutes), so a slow build never looks like a hung one.
_HEARTBEAT_SECONDS = 10.0


def _run_logged(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    log: IO[str],
    on_line: Callable[[str], None],
    describe: Callable[[], str],
    progress: ConsoleProgress,
    what: str,
    log_path: Path,
) -> None:
    log.write(f"$ (cd {cwd} && {' '.join(argv)})\n")
    log.flush()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    output = proc.stdout
    assert output is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for raw in output:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=pump, name=f"{Path(argv[0]).name}-output", daemon=True).start()
    tail: list[str] = []
    try:
        while True:
            try:
                raw = lines.get(timeout=_HEARTBEAT_SECONDS)
            except queue.Empty:
                progress.update(describe())
                continue
            if raw is None:
                break
            log.write(raw)
            line = raw.rstrip("\n")
            tail = [*tail[-19:], line]
            on_line(line)
            progress.update(describe())
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): do not leave go running
            proc.kill()
            proc.wait()
        log.flush()
    if rc != 0:
        if "-o" in argv:
            # A failed link can leave a partial output behind; never let it look built.
            Path(argv[argv.index("-o") + 1]).unlink(missing_ok=True)
        detail = "\n".join(f"    {line}" for line in tail[-8:])
        raise BuildFailedError(
            f"{what} failed: `{Path(argv[0]).name} {Path(argv[1]).name}` exited {rc}; "
            f"read {log_path}. Last lines:\n{detail}"
        )


def _record_built(binaries: ControlPlaneBinaries, name: str) -> None:
    recorded = _read_manifest(binaries.manifest)
    key = "etcd" if name == "etcd" else "kubernetes"
    recorded[key] = binaries.versions.etcd if name == "etcd" else binaries.versions.kubernetes
    tmp = binaries.manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, binaries.manifest)


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"
