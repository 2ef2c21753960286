"""An unprivileged identity: a ServiceAccount and a kubeconfig holding a token for it.

Later tests run the operator as ``system:serviceaccount:batchcert-system:batchcert-operator``
under exactly the RBAC that ``deploy/`` ships, so this identity starts with no permissions at
all beyond what every authenticated user has (discovery, self-review).

The token comes from the TokenRequest API (``serviceaccounts/<name>/token``), which the API server
answers itself: no controller-manager, token controller or Secret is involved. Creating the
namespace and the ServiceAccount is idempotent (an existing one is reused).
"""

from __future__ import annotations

from pathlib import Path

from batchdev.devcluster.errors import DevClusterError
from batchdev.devcluster.kubeconfig import build_token_kubeconfig, write_kubeconfig
from batchdev.devcluster.rest import AdminClient

DEFAULT_TOKEN_SECONDS = 24 * 3600


def parse_serviceaccount_ref(ref: str) -> tuple[str, str]:
    """``"NAMESPACE/NAME"`` → ``(namespace, name)``."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise DevClusterError(f"expected a ServiceAccount as NAMESPACE/NAME, got {ref!r}")
    return namespace, name


def serviceaccount_username(namespace: str, name: str) -> str:
    """The user name Kubernetes authenticates the ServiceAccount's tokens as."""
    return f"system:serviceaccount:{namespace}:{name}"


def ensure_serviceaccount(client: AdminClient, namespace: str, name: str) -> None:
    """Create the namespace and the ServiceAccount unless they exist."""
    client.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    client.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )


def request_token(
    client: AdminClient, namespace: str, name: str, seconds: int = DEFAULT_TOKEN_SECONDS
) -> str:
    """A bound token for the ServiceAccount, valid ``seconds`` (the server may shorten it)."""
    response = client.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )
    if response.status != 201 and response.status != 200:
        raise DevClusterError(
            f"TokenRequest for {namespace}/{name} failed: HTTP {response.status}: {response.text}"
        )
    token = response.json().get("status", {}).get("token")
    if not isinstance(token, str) or not token:
        raise DevClusterError(f"TokenRequest for {namespace}/{name} returned no token")
    return token


def write_serviceaccount_kubeconfig(
    client: AdminClient,
    server: str,
    ca_pem: bytes,
    namespace: str,
    name: str,
    out: Path,
    seconds: int = DEFAULT_TOKEN_SECONDS,
) -> Path:
    """Ensure the ServiceAccount exists and write a kubeconfig that authenticates as it."""
    ensure_serviceaccount(client, namespace, name)
    token = request_token(client, namespace, name, seconds)
    user = serviceaccount_username(namespace, name)
    return write_kubeconfig(build_token_kubeconfig(server, ca_pem, user, token), out)
