"""Which binaries are pinned, where they are cached, and how building fails.

Covers: versions are read from the ``k8s`` go.mod files (the single place they are
pinned); the cache path follows ``XDG_CACHE_HOME``; a binary counts as built only with a matching
``versions.json``; the version stamp in the linker flags; a missing Go and a failing build each
give one message naming the cause (and the log file), leaving no partial binary behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from batchdev.devcluster import binaries as binaries_module
from batchdev.devcluster.binaries import (
    ConsoleProgress,
    ControlPlaneBinaries,
    PinnedVersions,
    build_binaries,
    build_kube_apiserver_ldflags,
    cache_root,
    find_go,
    parse_required_version,
    read_pinned_versions,
)
from batchdev.devcluster.errors import BuildFailedError, DevClusterError, GoToolchainMissingError

GOMOD = """module example.dev/tools

go 1.26.0

require k8s.io/kubernetes v1.37.2

require (
\tgo.etcd.io/etcd/server/v3 v3.7.3
\tk8s.io/kubernetes-extra v9.9.9 // indirect
)
"""


def test_required_versions_are_read_in_single_line_and_block_form() -> None:
    assert parse_required_version(GOMOD, "k8s.io/kubernetes") == "v1.37.2"
    assert parse_required_version(GOMOD, "go.etcd.io/etcd/server/v3") == "v3.7.3"


def test_a_module_that_is_not_required_is_an_error() -> None:
    with pytest.raises(DevClusterError, match=r"does not require go\.etcd\.io/bbolt"):
        parse_required_version(GOMOD, "go.etcd.io/bbolt")


def test_the_repository_pins_kubernetes_and_etcd_in_its_go_modules() -> None:
    versions = read_pinned_versions()
    assert versions.kubernetes.startswith("v1.")
    assert versions.etcd.startswith("v3.")


def test_the_cache_follows_xdg_cache_home() -> None:
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/batchcert/k8s")
    assert cache_root({}) == Path.home() / ".cache" / "batchcert" / "k8s"


def test_the_version_is_stamped_for_server_and_client_go() -> None:
    flags = build_kube_apiserver_ldflags("v1.37.2")
    assert flags[:2] == ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.37.2" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=37" in flags
    with pytest.raises(DevClusterError):
        build_kube_apiserver_ldflags("master")


def test_a_binary_counts_as_built_only_with_a_matching_manifest(tmp_path: Path) -> None:
    built = ControlPlaneBinaries(tmp_path, PinnedVersions("v1.37.2", "v3.7.3"))
    assert built.missing() == ["kube-apiserver", "etcd"]
    for name in ("kube-apiserver", "etcd"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    assert built.missing() == ["kube-apiserver", "etcd"]  # present but unrecorded
    built.manifest.write_text('{"kubernetes": "v1.37.2", "etcd": "v3.6.0"}')
    assert built.missing() == ["etcd"]  # the pin moved: only etcd is rebuilt
    built.manifest.write_text('{"kubernetes": "v1.37.2", "etcd": "v3.7.3"}')
    assert built.is_complete()


def test_a_missing_go_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries_module.shutil, "which", lambda _name: None)
    monkeypatch.setattr(binaries_module, "_is_executable", lambda _path: False)
    with pytest.raises(GoToolchainMissingError, match=r"go\.dev/dl"):
        find_go()


def fake_tools(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    for name, module in (
        ("kube-apiserver", "k8s.io/kubernetes"),
        ("etcd", "go.etcd.io/etcd/server/v3"),
    ):
        (tools / name).mkdir(parents=True)
        (tools / name / "go.mod").write_text(f"module x\n\nrequire {module} v1.37.2\n")
    return tools


def test_a_failed_build_names_the_log_and_leaves_no_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    # `go list` succeeds, `go build` fails the way a compile error does.
    fake_go.write_text(
        '#!/bin/sh\nif [ "$1" = list ]; then echo k8s.io/a; exit 0; fi\n'
        'echo "compile: something broke" >&2; exit 2\n'
    )
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_go.parent}{os.pathsep}{os.environ['PATH']}")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}

    with pytest.raises(BuildFailedError) as failure:
        build_binaries(
            env=env, tools_dir=fake_tools(tmp_path), progress=ConsoleProgress(interval=0)
        )

    cache = tmp_path / "cache" / "batchcert" / "k8s" / "v1.37.2"
    assert str(cache / "build-kube-apiserver.log") in str(failure.value)
    assert "compile: something broke" in str(failure.value)
    assert not (cache / "kube-apiserver").exists()
    assert "compile: something broke" in (cache / "build-kube-apiserver.log").read_text()


def test_a_silent_build_still_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # go says nothing for a while (a huge package, the final link): the heartbeat keeps the
    # progress line coming so a CI log never looks hung.
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text(
        '#!/bin/sh\nif [ "$1" = list ]; then echo k8s.io/a; exit 0; fi\n'
        "sleep 0.5\n"
        'for a in "$@"; do [ "$prev" = -o ] && echo "#!/bin/sh" > "$a" && chmod +x "$a"; prev=$a; done\n'
    )
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_go.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(binaries_module, "_HEARTBEAT_SECONDS", 0.05)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    out = io.StringIO()

    built = build_binaries(
        env=env, tools_dir=fake_tools(tmp_path), progress=ConsoleProgress(out, interval=0)
    )

    assert built.is_complete()
    report = out.getvalue()
    assert report.count("kube-apiserver: compiled 0/1 packages") >= 3
    assert "built etcd" in report
    assert "built kube-apiserver" in report
