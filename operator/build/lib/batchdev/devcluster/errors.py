"""The errors the dev cluster reports to a person: each message is the whole story.

Every message names the cause and, where a process or a build was involved, the log file to read,
so the CLI prints it as-is and exits 1, and a test failure shows it verbatim.
"""

from __future__ import annotations


class DevClusterError(Exception):
    """Base of every dev-cluster error."""


class GoToolchainMissingError(DevClusterError):
    """``go`` is not installed: the binaries cannot be built."""


class BuildFailedError(DevClusterError):
    """``go`` ran and failed; the message names the log file."""


class BinariesMissingError(DevClusterError):
    """The binaries are not built yet and the caller did not ask to build them."""


class ClusterStartError(DevClusterError):
    """etcd or kube-apiserver died, refused its port or did not become ready in time."""


class PortInUseError(ClusterStartError):
    """A component could not bind its port: something else is listening there."""


class ClusterAlreadyRunningError(DevClusterError):
    """The state dir belongs to a control plane that is still running."""


class ClusterNotRunningError(DevClusterError):
    """The state dir holds no running control plane."""


class ClusterStopError(DevClusterError):
    """A process or a port survived ``down``."""
