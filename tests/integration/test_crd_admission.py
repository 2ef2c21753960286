"""The BatchCertPool CRD, as the real API server enforces it at admission.

Covers, against the shared ``kube_cluster`` (kube-apiserver with ``crds/`` installed), in this
module's own namespace:

* the examples apply, and the server fills in every default the operator's spec model has (read
  back and compared); a minimal manifest reads back with exactly the documented defaults;
* a catalogue of invalid and hostile manifests (``INVALID_MANIFESTS``: wrong types, oversize
  strings and lists, injection-looking names, versioned and ``/certificates/`` secret URIs,
  foreign-subscription identities, enormous node counts, contradicting fields), each refused by
  ``kubectl apply`` with a message naming the field and saying what to write instead;
* unknown fields: refused under ``kubectl apply --validate=strict`` and ``--server-side`` with
  the field's name, and pruned (never stored) when validation is off;
* transitions: ``account`` and ``poolName`` cannot change, and ``poolName`` cannot be added or
  removed, on an existing object; mutable fields (and the disruptive ones, which the operator
  handles per ``disruptiveUpdatePolicy``) can;
* the status subresource accepts the status the operator writes, and ``kubectl get bcp`` shows
  it in the printer columns; ``kubectl explain`` shows the field documentation;
* before the operator writes anything, the server serves ``status: {observedGeneration: 0}``
  (the schema's default), in the create call's answer and on every read, so kstatus, Flux and
  Argo CD read a new object as in progress (captured as tests/data/status/just-created.json).

The assertions hold on every supported kube-apiserver (1.30 through 1.37; ``make k8s-oldest`` runs
this module against 1.30): they name the field and what is wrong, not one release's wording of
the server's generic messages (``too_long``; older releases leave the ``status.`` prefix off a
status error's path).

Every object carries ``batchcert.dev/paused: "true"`` so an operator running against the same
control plane leaves it alone.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchcert.models.spec import parse_spec
from support.captures import capture
from support.cluster import KubeCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
NAMESPACE = "crd-admission"
PAUSED = {"batchcert.dev/paused": "true"}

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ACR/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/testumaforpools"
)
VERSION = "8f5f3f491afd48cb99286ba2aacd39af"


# --- manifests -----------------------------------------------------------------------------------


def load_example(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return manifest


def prepared(manifest: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A copy placed in this module's namespace, paused, optionally renamed."""
    result = copy.deepcopy(manifest)
    metadata = result.setdefault("metadata", {})
    metadata["namespace"] = NAMESPACE
    metadata.setdefault("annotations", {}).update(PAUSED)
    if name is not None:
        metadata["name"] = name
    return result


def minimal_manifest(name: str) -> dict[str, Any]:
    """Only what the schema requires; everything else is left to the defaults."""
    return prepared(
        {
            "apiVersion": "batchcert.dev/v1alpha1",
            "kind": "BatchCertPool",
            "metadata": {"name": name},
            "spec": {
                "account": {
                    "subscriptionId": SUBSCRIPTION,
                    "resourceGroup": "ACR",
                    "name": "mybatchaccount",
                },
                "vmSize": "STANDARD_DS2_V2",
                "image": {"publisher": "canonical", "offer": "ubuntuserver", "sku": "20.04-lts"},
                "nodeAgentSkuId": "batch.node.ubuntu 20.04",
                "scale": {"fixed": {}},
                "identity": {"resourceId": IDENTITY},
                "certificates": [{"vaultUrl": "https://mykv.vault.azure.net", "name": "mycert"}],
            },
        }
    )


DELETE = object()
"""A patch value that removes the key."""


def patched(manifest: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy with ``{"spec.a.b": value}`` changes applied (``DELETE`` removes the key)."""
    result = copy.deepcopy(manifest)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = result
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is DELETE:
            node.pop(leaf, None)
        elif isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return result


# --- the kubectl side ----------------------------------------------------------------------------


def apply(kube: KubeCluster, manifest: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = kube.kubectl("apply", *extra, "-f", "-", input=json.dumps(manifest))
    return result.returncode, result.stdout + result.stderr


def get(kube: KubeCluster, name: str) -> dict[str, Any]:
    result = kube.kubectl("get", "batchcertpool", name, "-n", NAMESPACE, "-o", "json", check=True)
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


Phrase = str | re.Pattern[str]
"""What a refusal must say: a literal phrase, or a pattern where the wording varies by release."""


def too_long(limit: int) -> re.Pattern[str]:
    """A string over ``limit`` characters, in any supported release's words: what matters is
    "Too long" and the limit (1.37: "may not be more than 64 bytes"; 1.30: "may not be longer
    than 64")."""
    return re.compile(rf"Too long: may not be [a-z ]+ than {limit}\b")


def assert_refused(output: str, rc: int, *phrases: Phrase) -> None:
    assert rc != 0, f"the server accepted it:\n{output}"
    # From the server, not kubectl's own parsing: the API is what refuses.
    assert "Error from server" in output or "is invalid" in output, output
    flat = " ".join(output.split())  # the server joins long messages on one line; kubectl may wrap
    for phrase in phrases:
        found = phrase.search(flat) if isinstance(phrase, re.Pattern) else phrase in flat
        assert found, f"{phrase!r} is not in the refusal:\n{output}"


@pytest.fixture(scope="module")
def kube(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    """The shared cluster with this module's namespace; its objects are deleted afterwards.

    There is no namespace controller in the test control plane, so the namespace itself stays.
    """
    kube_cluster.apply(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    )
    yield kube_cluster
    kube_cluster.kubectl(
        "delete", "batchcertpools", "--all", "-n", NAMESPACE, "--wait=false", "--ignore-not-found"
    )


# --- accepted: the examples and the defaults -----------------------------------------------------


@pytest.mark.parametrize("example", ["batchcertpool.yaml", "batchcertpool-windows.yaml"])
def test_example_is_accepted_with_defaults_filled_in(kube: KubeCluster, example: str) -> None:
    manifest = prepared(load_example(example))
    rc, output = apply(kube, manifest)
    assert rc == 0, output

    spec = get(kube, manifest["metadata"]["name"])["spec"]
    given = manifest["spec"]

    # The certificates are kept exactly as written (the model would normalise them)...
    assert spec["certificates"] == given["certificates"]
    # ...and everything else is what the operator's spec model makes of the example: what the
    # example says, plus the server's defaults, which must be the model's defaults.
    model = parse_spec(given).model_dump(by_alias=True, exclude_none=True, mode="json")
    del spec["certificates"], model["certificates"]
    assert spec == model


def test_minimal_manifest_reads_back_with_every_default(kube: KubeCluster) -> None:
    manifest = minimal_manifest("minimal")
    rc, output = apply(kube, manifest)
    assert rc == 0, output

    spec = get(kube, "minimal")["spec"]

    assert spec == {
        **manifest["spec"],
        "image": {**manifest["spec"]["image"], "version": "latest"},
        "taskSchedulingPolicy": {"nodeFillType": "Spread"},
        "scale": {
            "fixed": {
                "targetDedicatedNodes": 0,
                "targetLowPriorityNodes": 0,
                "resizeTimeout": "PT15M",
            }
        },
        "keyVaultExtension": {
            "name": "KVExtensions",
            "typeHandlerVersion": "3.0",
            "autoUpgradeMinorVersion": True,
            "pollingIntervalSeconds": 300,
            "requireInitialSync": True,
        },
        "deletionPolicy": "Delete",
        "disruptiveUpdatePolicy": "Report",
        "verification": {
            "enabled": False,
            "interval": "PT24H",
            "requireProof": False,
            "taskTimeout": "PT10M",
        },
        # Tenancy: the namespace's ServiceAccount whose Azure identity the operator acts with.
        "credentials": {"serviceAccountName": "batchcert"},
    }


def test_autoscale_interval_default_is_filled_in(kube: KubeCluster) -> None:
    manifest = patched(
        minimal_manifest("minimal-auto"),
        {"spec.scale": {"auto": {"formula": "$TargetDedicatedNodes = 1;"}}},
    )
    rc, output = apply(kube, manifest)
    assert rc == 0, output

    assert get(kube, "minimal-auto")["spec"]["scale"] == {
        "auto": {"formula": "$TargetDedicatedNodes = 1;", "evaluationInterval": "PT15M"}
    }


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        pytest.param(
            {"spec.certificates": [{"secretId": "https://mykv.vault.azure.net/secrets/mycert/"}]},
            "a trailing slash is still versionless",
            id="secretId-trailing-slash",
        ),
        pytest.param(
            {
                "spec.certificates": [
                    {
                        "secretId": "https://mykv.vault.azure.net/secrets/mycert",
                        "vaultUrl": "https://mykv.vault.azure.net/",
                        "name": "mycert",
                    }
                ]
            },
            "both forms, agreeing",
            id="secretId-and-vaultUrl-agree",
        ),
        pytest.param(
            {"spec.certificates": [{"vaultUrl": "https://mykv.vault.sim.test:8443", "name": "c"}]},
            "a custom-cloud vault with a port (the simulator's form)",
            id="vaultUrl-custom-cloud-with-port",
        ),
        pytest.param(
            {"spec.scale": {"fixed": {"targetDedicatedNodes": 2000, "resizeTimeout": "P1DT2H"}}},
            "the largest pool and a duration with days",
            id="fixed-at-the-limits",
        ),
        pytest.param(
            {
                "spec.scale": {
                    "auto": {"formula": "$TargetDedicatedNodes=1;", "evaluationInterval": "P7D"}
                }
            },
            "the longest evaluation interval",
            id="auto-168h",
        ),
        pytest.param(
            {
                "spec.keyVaultExtension": {"typeHandlerVersion": "1.0"},
                "spec.certificates": [
                    {"vaultUrl": "https://mykv.vault.azure.net", "name": "a"},
                    {
                        "vaultUrl": "https://mykv.vault.azure.net",
                        "name": "b",
                        "certificateStoreLocation": "/var/lib/waagent/Microsoft.Azure.KeyVault",
                    },
                ],
            },
            "1.0 with two certificates in the same (default) store",
            id="v1-one-store",
        ),
        pytest.param(
            {
                "spec.nodeAgentSkuId": "batch.node.windows amd64",
                "spec.keyVaultExtension": {"typeHandlerVersion": "1.0"},
                "spec.certificates": [
                    {"vaultUrl": "https://mykv.vault.azure.net", "name": "a"},
                    {
                        "vaultUrl": "https://mykv.vault.azure.net",
                        "name": "b",
                        "certificateStoreLocation": "LocalMachine",
                        "certificateStoreName": "MY",
                    },
                ],
            },
            "Windows 1.0 with the default store written out on one certificate",
            id="windows-v1-one-store",
        ),
        pytest.param(
            {
                "spec.identity.resourceId": IDENTITY.lower().replace(
                    "/resourcegroups/acr", "/resourcegroups/ACR"
                )
            },
            "ARM ids are case-insensitive",
            id="identity-lowercase-provider",
        ),
        pytest.param(
            {"spec.account.resourceGroup": "rg.prod_(eu)-1"},
            "every character ARM allows in a resource group",
            id="resourceGroup-all-allowed-characters",
        ),
    ],
)
def test_valid_variations_are_accepted(
    kube: KubeCluster, request: pytest.FixtureRequest, changes: dict[str, Any], why: str
) -> None:
    name = "ok-" + request.node.callspec.id.lower()[:40].rstrip("-")
    manifest = patched(prepared(load_example("batchcertpool.yaml"), name), changes)
    rc, output = apply(kube, manifest, "--dry-run=server")
    assert rc == 0, f"{why}:\n{output}"
    parse_spec(manifest["spec"])  # what admission accepts, the operator can parse


# --- refused: the catalogue ----------------------------------------------------------------------


@dataclass(frozen=True)
class Invalid:
    """One invalid or hostile manifest: changes to the Linux example and the refusal expected."""

    id: str
    changes: dict[str, Any]
    phrases: tuple[Phrase, ...]
    extra_args: tuple[str, ...] = ()
    # Phrases that must not be in the refusal: a message that misleads is a defect too.
    absent: tuple[str, ...] = ()


def _certs(*items: dict[str, Any]) -> dict[str, Any]:
    return {"spec.certificates": list(items)}


def _cert(**fields: Any) -> dict[str, Any]:
    return {"vaultUrl": "https://mykv.vault.azure.net", "name": "mycert", **fields}


WINDOWS = {"spec.nodeAgentSkuId": "batch.node.windows amd64"}

INVALID_MANIFESTS: list[Invalid] = [
    # Certificates: the rotation traps first.
    Invalid(
        "secretId-versioned",
        _certs({"secretId": f"https://mykv.vault.azure.net/secrets/mycert/{VERSION}"}),
        ("spec.certificates[0].secretId", "must be versionless", "silently defeats rotation"),
    ),
    Invalid(
        "secretId-certificates-path",
        _certs({"secretId": "https://mykv.vault.azure.net/certificates/mycert"}),
        ("spec.certificates[0].secretId", "not /certificates/", "no private key"),
    ),
    Invalid(
        "secretId-plain-http",
        _certs({"secretId": "http://mykv.vault.azure.net/secrets/mycert"}),
        ("secretId must look like https://<vault-host>/secrets/<name>",),
    ),
    Invalid(
        "secretId-query-string",
        _certs({"secretId": "https://mykv.vault.azure.net/secrets/mycert?api-version=7.4"}),
        ("secretId must look like https://<vault-host>/secrets/<name>",),
    ),
    Invalid(
        "secretId-disagrees-with-vaultUrl",
        _certs(
            {
                "secretId": "https://other.vault.azure.net/secrets/mycert",
                "vaultUrl": "https://mykv.vault.azure.net",
            }
        ),
        ("spec.certificates[0]", "name different certificates"),
    ),
    Invalid(
        "certificate-vaultUrl-without-name",
        _certs({"vaultUrl": "https://mykv.vault.azure.net"}),
        ("spec.certificates[0]", "needs vaultUrl and name, or secretId"),
    ),
    Invalid(
        "vaultUrl-with-secret-path",
        _certs(_cert(vaultUrl="https://mykv.vault.azure.net/secrets/mycert")),
        ("spec.certificates[0].vaultUrl", "with no path"),
    ),
    Invalid(
        "vaultUrl-ip-literal-imds",
        _certs(_cert(vaultUrl="https://169.254.169.254")),
        ("spec.certificates[0].vaultUrl", "vaultUrl must be https://<vault-host>"),
    ),
    Invalid(
        "vaultUrl-credentials-in-host",
        _certs(_cert(vaultUrl="https://attacker.example@mykv.vault.azure.net")),
        ("spec.certificates[0].vaultUrl", "no path, query or credentials"),
    ),
    Invalid(
        "certificate-name-injection",
        _certs(_cert(name="mycert/../../keys/master")),
        ("spec.certificates[0].name", "1-127 letters, digits and hyphens"),
    ),
    Invalid("certificates-empty", _certs(), ("spec.certificates", "at least 1 item")),
    Invalid(
        "certificates-21-items",
        _certs(*[_cert(name=f"c{i}") for i in range(21)]),
        ("spec.certificates", "must have at most 20 items"),
    ),
    Invalid(
        "certificates-duplicate",
        _certs(_cert(), {"secretId": "https://MYKV.vault.azure.net/secrets/mycert"}),
        ("spec.certificates", "same certificate twice"),
    ),
    Invalid(
        "linux-certificate-in-windows-store",
        _certs(_cert(certificateStoreLocation="LocalMachine")),
        ("spec.certificates", "certificateStoreLocation does not fit the pool's OS"),
    ),
    Invalid(
        "windows-certificate-in-linux-path",
        {**WINDOWS, **_certs(_cert(certificateStoreLocation="/etc/ssl"))},
        ("spec.certificates", "does not fit the pool's OS", "LocalMachine or CurrentUser"),
    ),
    Invalid(
        "store-location-path-traversal",
        _certs(_cert(certificateStoreLocation="/var/lib/waagent/../../../etc/cron.d")),
        ("spec.certificates[0].certificateStoreLocation", "without . or .. segments"),
    ),
    Invalid(
        "store-name-on-linux",
        _certs(_cert(certificateStoreName="MY")),
        ("spec.certificates", "certificateStoreName applies to Windows pools only"),
    ),
    Invalid(
        "windows-v2-certificates-in-different-stores",
        {
            **WINDOWS,
            "spec.keyVaultExtension": {"typeHandlerVersion": "2.0"},
            **_certs(_cert(name="a"), _cert(name="b", certificateStoreName="Root")),
        },
        ("spec.certificates", "render one certificate store for all certificates"),
    ),
    Invalid(
        "v1-certificates-in-different-stores",
        {
            "spec.keyVaultExtension": {"typeHandlerVersion": "1.0"},
            **_certs(_cert(name="a"), _cert(name="b", certificateStoreLocation="/etc/certs")),
        },
        ("spec.certificates", "render one certificate store for all certificates"),
    ),
    # Account and pool naming: these strings end up in ARM URLs.
    Invalid(
        "subscriptionId-not-a-guid",
        {"spec.account.subscriptionId": "my-subscription"},
        ("spec.account.subscriptionId", "must be a GUID"),
    ),
    Invalid(
        "resourceGroup-path-injection",
        {"spec.account.resourceGroup": "ACR/providers/Microsoft.Batch/batchAccounts/victim"},
        ("spec.account.resourceGroup", "must be an Azure resource group name"),
    ),
    Invalid(
        "resourceGroup-ends-in-period",
        {"spec.account.resourceGroup": "rg."},
        ("spec.account.resourceGroup", "not ending in a period"),
    ),
    Invalid(
        "account-name-uppercase",
        {"spec.account.name": "MyBatchAccount"},
        ("spec.account.name", "3-24 lowercase letters and digits"),
    ),
    Invalid(
        "account-name-shell-injection",
        {"spec.account.name": "acct;rm -rf /"},
        ("spec.account.name", "3-24 lowercase letters and digits"),
    ),
    Invalid(
        "poolName-command-substitution",
        {"spec.poolName": "pool$(reboot)"},
        ("spec.poolName", "must be an Azure Batch pool name"),
    ),
    Invalid(
        "poolName-65-characters",
        {"spec.poolName": "p" * 65},
        ("spec.poolName", too_long(64)),
    ),
    Invalid(
        "metadata-name-with-dot-and-no-poolName",
        {"metadata.name": "render.pool"},
        (
            "spec.poolName",
            "metadata.name is not a valid Azure Batch pool name",
            "set spec.poolName",
        ),
    ),
    Invalid(
        "vmSize-sql-injection",
        {"spec.vmSize": "Standard_D2s_v5'; DROP TABLE pools;--"},
        ("spec.vmSize", "must be an Azure VM size"),
    ),
    Invalid(
        "image-version-with-command",
        {"spec.image.version": "latest;curl x|sh"},
        ("spec.image.version", "latest or Major.Minor.Build"),
    ),
    Invalid(
        "image-publisher-10kb",
        {"spec.image.publisher": "a" * 10_000},
        ("spec.image.publisher", too_long(64)),
    ),
    Invalid(
        "nodeAgentSkuId-not-a-batch-agent",
        {"spec.nodeAgentSkuId": "ubuntu 20.04"},
        ("spec.nodeAgentSkuId", "must be a Batch node agent SKU"),
    ),
    Invalid(
        "osType-contradicts-agent",
        {"spec.osType": "Windows"},
        ("spec.osType", "osType contradicts nodeAgentSkuId"),
    ),
    Invalid("osType-unknown", {"spec.osType": "MacOS"}, ("spec.osType", "Unsupported value")),
    # Scale.
    Invalid(
        "scale-both-fixed-and-auto",
        {"spec.scale.auto": {"formula": "$TargetDedicatedNodes = 1;"}},
        ("spec.scale", "exactly one of fixed"),
    ),
    Invalid("scale-neither", {"spec.scale": {}}, ("spec.scale", "exactly one of fixed")),
    Invalid(
        "targetDedicatedNodes-enormous",
        {"spec.scale.fixed.targetDedicatedNodes": 1_000_000},
        ("spec.scale.fixed.targetDedicatedNodes", "less than or equal to 2000"),
    ),
    Invalid(
        "targetLowPriorityNodes-negative",
        {"spec.scale.fixed.targetLowPriorityNodes": -1},
        ("spec.scale.fixed.targetLowPriorityNodes", "greater than or equal to 0"),
    ),
    Invalid(
        "targetDedicatedNodes-string",
        {"spec.scale.fixed.targetDedicatedNodes": "3"},
        ("spec.scale.fixed.targetDedicatedNodes", "must be of type integer"),
    ),
    Invalid(
        "resizeTimeout-under-5-minutes",
        {"spec.scale.fixed.resizeTimeout": "PT4M59S"},
        ("spec.scale.fixed.resizeTimeout", "at least PT5M"),
    ),
    Invalid(
        "resizeTimeout-go-duration",
        {"spec.scale.fixed.resizeTimeout": "15m"},
        ("spec.scale.fixed.resizeTimeout", "must be an ISO-8601 duration such as PT15M"),
    ),
    Invalid(
        "nodeDeallocationOption-unknown",
        {"spec.scale.fixed.nodeDeallocationOption": "Delete"},
        ("spec.scale.fixed.nodeDeallocationOption", "Unsupported value"),
    ),
    Invalid(
        "evaluationInterval-over-168h",
        {
            "spec.scale": {
                "auto": {"formula": "$TargetDedicatedNodes=1;", "evaluationInterval": "P7DT1S"}
            }
        },
        ("spec.scale.auto.evaluationInterval", "between PT5M and PT168H"),
    ),
    Invalid(
        "formula-blank",
        {"spec.scale": {"auto": {"formula": "  \n  "}}},
        ("spec.scale.auto.formula", "must not be blank"),
    ),
    Invalid(
        "formula-over-8192-characters",
        {"spec.scale": {"auto": {"formula": "$TargetDedicatedNodes = 1;" * 400}}},
        ("spec.scale.auto.formula", too_long(8192)),
    ),
    # Identity.
    Invalid(
        "identity-is-a-virtual-machine",
        {
            "spec.identity.resourceId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ACR/"
            "providers/Microsoft.Compute/virtualMachines/vm1"
        },
        ("spec.identity.resourceId", "user-assigned managed identity"),
    ),
    Invalid(
        "identity-in-foreign-subscription",
        {
            "spec.identity.resourceId": IDENTITY.replace(
                SUBSCRIPTION, "11111111-2222-3333-4444-555555555555"
            )
        },
        ("spec.identity.resourceId", "is in another subscription than account.subscriptionId"),
    ),
    Invalid(
        "identity-resourceId-is-a-client-id",
        {"spec.identity.resourceId": "b9f6dd56-d2d6-4967-99d7-8062d56fd84c"},
        ("spec.identity.resourceId", "is a GUID", "identity.clientId"),
        absent=("another subscription", "must be the full ARM id"),
    ),
    Invalid(
        "clientId-is-a-resource-id",
        {"spec.identity.clientId": "testumaforpools"},
        ("spec.identity.clientId", "must be a GUID"),
    ),
    # The extension.
    Invalid(
        "typeHandlerVersion-unquoted-number",
        {"spec.keyVaultExtension.typeHandlerVersion": 3.0},
        ("spec.keyVaultExtension.typeHandlerVersion", "must be of type string"),
    ),
    Invalid(
        "typeHandlerVersion-4",
        {"spec.keyVaultExtension.typeHandlerVersion": "4.0"},
        ("spec.keyVaultExtension.typeHandlerVersion", "Unsupported value", '"3.0"'),
    ),
    Invalid(
        "extension-named-as-batch-own-extension",
        {"spec.keyVaultExtension.name": "BatchNodeExtension"},
        ("spec.keyVaultExtension.name", "Batch's own extension"),
    ),
    Invalid(
        "pollingInterval-every-second",
        {"spec.keyVaultExtension.pollingIntervalSeconds": 1},
        ("spec.keyVaultExtension.pollingIntervalSeconds", "greater than or equal to 60"),
    ),
    Invalid(
        "pollingInterval-over-a-day",
        {"spec.keyVaultExtension.pollingIntervalSeconds": 86_401},
        ("spec.keyVaultExtension.pollingIntervalSeconds", "less than or equal to 86400"),
    ),
    # Policies and shape.
    Invalid(
        "deletionPolicy-unknown",
        {"spec.deletionPolicy": "Retain"},
        ("spec.deletionPolicy", "Unsupported value", '"Orphan"'),
    ),
    Invalid(
        "disruptiveUpdatePolicy-unknown",
        {"spec.disruptiveUpdatePolicy": "Force"},
        ("spec.disruptiveUpdatePolicy", "Unsupported value", '"ScaleToZero"'),
    ),
    Invalid("account-missing", {"spec.account": DELETE}, ("spec.account", "Required value")),
    Invalid("spec-missing", {"spec": DELETE}, ("spec", "Required value")),
    Invalid(
        "unknown-field-strict",
        {"spec.certificate": {"vaultUrl": "https://mykv.vault.azure.net", "name": "x"}},
        ('unknown field "spec.certificate"',),
        extra_args=("--validate=strict",),
    ),
    Invalid(
        "extension-setting-by-its-azure-name-server-side",
        {"spec.keyVaultExtension.pollingIntervalInS": "3600"},
        (".spec.keyVaultExtension.pollingIntervalInS: field not declared in schema",),
        extra_args=("--server-side",),
    ),
    # Verification: the job is the operator's, never named by the spec (issue 21).
    Invalid(
        "verification-jobId-removed",
        {"spec.verification.jobId": "batchcert-verify-other-team"},
        ("spec.verification.jobId", "was removed", "another namespace's job"),
    ),
    Invalid(
        "verification-jobId-removed-validation-off",
        {"spec.verification.jobId": "x"},
        ("spec.verification.jobId", "was removed"),
        extra_args=("--validate=false",),
    ),
    Invalid(
        "verification-interval-zero",
        {"spec.verification.interval": "PT0S"},
        ("spec.verification.interval", "at least PT15M"),
    ),
    Invalid(
        "verification-interval-too-long",
        {"spec.verification.interval": "P31D"},
        ("spec.verification.interval", "at most P30D"),
    ),
    Invalid(
        "verification-interval-overflowing",
        {"spec.verification.interval": "P1000000000D"},
        ("spec.verification.interval",),
    ),
    Invalid(
        "verification-taskTimeout-too-short",
        {"spec.verification.taskTimeout": "PT20S"},
        ("spec.verification.taskTimeout", "at least PT1M"),
    ),
    Invalid(
        "verification-taskTimeout-too-long",
        {"spec.verification.taskTimeout": "PT2H"},
        ("spec.verification.taskTimeout", "at most PT1H"),
    ),
    Invalid(
        "verification-windows-current-user",
        {
            **WINDOWS,
            "spec.verification.enabled": True,
            **_certs(_cert(certificateStoreLocation="CurrentUser")),
        },
        ("spec.verification.enabled", "cannot prove a CurrentUser certificate"),
    ),
    Invalid(
        "secretId-versioned-server-side",
        _certs({"secretId": f"https://mykv.vault.azure.net/secrets/mycert/{VERSION}"}),
        ("spec.certificates[0].secretId", "must be versionless"),
        extra_args=("--server-side",),
    ),
]


def test_catalogue_has_distinct_ids_and_at_least_thirty_cases() -> None:
    ids = [case.id for case in INVALID_MANIFESTS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(INVALID_MANIFESTS)), ids=[c.id for c in INVALID_MANIFESTS]
)
def test_invalid_manifest_is_refused_with_a_useful_message(
    kube: KubeCluster, index: int, case: Invalid
) -> None:
    # A distinct name per case: were one accepted, the next would not silently be an update.
    manifest = patched(
        prepared(load_example("batchcertpool.yaml"), f"invalid-{index:02d}"), case.changes
    )

    rc, output = apply(kube, manifest, *case.extra_args)

    assert_refused(output, rc, *case.phrases)
    flat = " ".join(output.split())
    for phrase in case.absent:
        assert phrase not in flat, f"{phrase!r} misleads in the refusal:\n{output}"


# --- unknown fields ------------------------------------------------------------------------------


def test_unknown_field_is_pruned_when_validation_is_off(kube: KubeCluster) -> None:
    manifest = patched(
        prepared(load_example("batchcertpool.yaml"), "pruned"),
        {"spec.keyVaultExtension.pollingIntervalInS": "10", "spec.surprise": True},
    )
    rc, output = apply(kube, manifest, "--validate=false")
    assert rc == 0, output

    spec = get(kube, "pruned")["spec"]
    assert "surprise" not in spec
    assert "pollingIntervalInS" not in spec["keyVaultExtension"]


# --- transitions ---------------------------------------------------------------------------------


def create_existing(
    kube: KubeCluster, request: pytest.FixtureRequest, *, pool_name: str | None
) -> dict[str, Any]:
    """Create a BatchCertPool named after the test (the module fixture deletes it later)."""
    suffix = request.node.name.split("[")[-1].rstrip("]").lower().replace("_", "-")
    manifest = prepared(load_example("batchcertpool.yaml"), f"existing-{suffix}"[:50].rstrip("-"))
    if pool_name is not None:
        manifest["spec"]["poolName"] = pool_name
    rc, output = apply(kube, manifest)
    assert rc == 0, output
    return manifest


IMMUTABLE_CHANGES = [
    pytest.param(
        {"spec.account.name": "otheraccount"}, ("account is immutable",), id="account-name"
    ),
    pytest.param(
        {"spec.account.resourceGroup": "OtherGroup"},
        ("account is immutable",),
        id="account-resourceGroup",
    ),
    pytest.param(
        {
            "spec.account.subscriptionId": "11111111-2222-3333-4444-555555555555",
            "spec.identity.resourceId": IDENTITY.replace(
                SUBSCRIPTION, "11111111-2222-3333-4444-555555555555"
            ),
        },
        ("account is immutable",),
        id="account-subscription",
    ),
    pytest.param(
        {"spec.poolName": "render_pool_02"}, ("poolName is immutable",), id="poolName-changed"
    ),
    pytest.param(
        {"spec.poolName": DELETE}, ("poolName cannot be added or removed",), id="poolName-removed"
    ),
]


@pytest.mark.parametrize(("changes", "phrases"), IMMUTABLE_CHANGES)
def test_immutable_field_cannot_change(
    kube: KubeCluster,
    request: pytest.FixtureRequest,
    changes: dict[str, Any],
    phrases: tuple[str, ...],
) -> None:
    existing = create_existing(kube, request, pool_name="render_pool_01")

    rc, output = apply(kube, patched(existing, changes))

    assert_refused(output, rc, *phrases)
    assert get(kube, existing["metadata"]["name"])["spec"]["account"] == existing["spec"]["account"]


def test_pool_name_cannot_be_added_later(kube: KubeCluster, request: pytest.FixtureRequest) -> None:
    existing = create_existing(kube, request, pool_name=None)

    rc, output = apply(kube, patched(existing, {"spec.poolName": "render_pool_01"}))

    assert_refused(output, rc, "poolName cannot be added or removed")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"spec.scale.fixed.targetDedicatedNodes": 3}, id="scale"),
        pytest.param({"spec.vmSize": "Standard_D4s_v5"}, id="vmSize-disruptive"),
        pytest.param(
            {"spec.keyVaultExtension.typeHandlerVersion": "2.0"}, id="extension-disruptive"
        ),
        pytest.param(_certs(_cert(), _cert(name="second")), id="certificates"),
        pytest.param({"spec.disruptiveUpdatePolicy": "Recreate"}, id="policy"),
    ],
)
def test_mutable_field_can_change(
    kube: KubeCluster, request: pytest.FixtureRequest, changes: dict[str, Any]
) -> None:
    existing = create_existing(kube, request, pool_name="render_pool_01")

    rc, output = apply(kube, patched(existing, changes))

    assert rc == 0, output


# --- status, printer columns, explain ------------------------------------------------------------

OPERATOR_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": t,
            "status": "True",
            "reason": r,
            "message": m,
            "lastTransitionTime": "2026-11-28T10:00:00Z",
            "observedGeneration": 1,
        }
        for t, r, m in [
            ("Ready", "Ready", "pool, certificates and nodes are ready"),
            ("PoolReady", "PoolCreated", ""),
            ("CertificateReady", "CertificateReady", "mycert is current and renews itself"),
            ("NodesReady", "ExtensionSucceeded", "1/1 nodes report success"),
        ]
    ],
    "pool": {
        "name": "render-pool",
        "resourceId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ACR/providers/"
        "Microsoft.Batch/batchAccounts/mybatchaccount/pools/render-pool",
        "provisioningState": "Succeeded",
        "allocationState": "Steady",
        "currentDedicatedNodes": 1,
        "currentLowPriorityNodes": 0,
    },
    "certificates": [
        {
            "name": "mycert",
            "vaultUrl": "https://mykv.vault.azure.net",
            "secretId": "https://mykv.vault.azure.net/secrets/mycert",
            "version": VERSION,
            "shortVersion": VERSION[:8],
            "thumbprint": "7C2C0E2D6B8F1A9E3D4C5B6A7F8E9D0C1B2A3F4E",
            "notBefore": "2026-11-01T00:00:00Z",
            "notAfter": "2027-11-01T00:00:00Z",
            "expectedRenewalTime": "2027-08-20T00:00:00Z",
            "lastRotationTime": "2026-11-28T10:00:00Z",
            "rotations": 1,
        }
    ],
    "nodes": {
        "total": 2,
        "ready": 1,
        "transitioning": 0,
        "failed": 1,
        "summary": "1/2",
        "lastCheckTime": "2026-11-28T10:05:00Z",
        "failures": [
            {
                "nodeId": "tvmps_0001",
                "code": "IdentityNotFound",
                "message": "Identity not found",
                "time": "2026-11-28T10:05:00Z",
            }
        ],
    },
    "kopf": {"progress": {"on_update": {"started": "2026-11-28T10:00:00Z", "retries": 0}}},
}


def test_status_the_operator_writes_is_kept_and_shown_by_kubectl_get(kube: KubeCluster) -> None:
    manifest = prepared(load_example("batchcertpool.yaml"), "with-status")
    rc, output = apply(kube, manifest)
    assert rc == 0, output

    kube.kubectl(
        "patch", "batchcertpool", "with-status", "-n", NAMESPACE, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": OPERATOR_STATUS}), check=True,
    )  # fmt: skip

    assert get(kube, "with-status")["status"] == OPERATOR_STATUS
    table = kube.kubectl("get", "bcp", "with-status", "-n", NAMESPACE, check=True).stdout
    header, row = table.splitlines()
    assert header.split() == [
        "NAME", "POOL", "NODES", "CERT-VERSION", "EXPIRES", "READY", "REASON", "AGE",
    ]  # fmt: skip
    assert row.split()[:7] == [
        "with-status", "render-pool", "1/2", VERSION[:8], "2027-11-01T00:00:00Z", "True", "Ready",
    ]  # fmt: skip


def test_a_new_object_reads_as_not_yet_observed(kube: KubeCluster) -> None:
    manifest = prepared(load_example("batchcertpool.yaml"), "just-created")
    manifest["status"] = {"observedGeneration": 7}  # a client's status on create is dropped
    created = kube.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer["metadata"]["generation"] == 1
    assert answer["status"] == {"observedGeneration": 0}
    read = get(kube, "just-created")
    assert read["status"] == {"observedGeneration": 0}
    capture(read, "just-created")
    # the first status patch replaces the default like any other value
    kube.kubectl(
        "patch", "batchcertpool", "just-created", "-n", NAMESPACE, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": OPERATOR_STATUS}), check=True,
    )  # fmt: skip
    assert get(kube, "just-created")["status"] == OPERATOR_STATUS


def test_status_refuses_a_condition_without_the_metav1_fields(kube: KubeCluster) -> None:
    manifest = prepared(load_example("batchcertpool.yaml"), "bad-status")
    rc, output = apply(kube, manifest)
    assert rc == 0, output

    result = kube.kubectl(
        "patch", "batchcertpool", "bad-status", "-n", NAMESPACE, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"conditions": [{"type": "Ready", "status": "Yes"}]}}),
    )  # fmt: skip

    # "status.conditions[0].status" on 1.37, "conditions[0].status" on older releases.
    assert_refused(result.stderr, result.returncode, "conditions[0].status", "Unsupported value")


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        ("batchcertpool", 'batchcert.dev/paused: "true"'),
        ("batchcertpool.spec.certificates.secretId", "silently defeats rotation"),
        ("batchcertpool.spec.keyVaultExtension.pollingIntervalSeconds", "between 60 and 86400"),
        ("batchcertpool.spec.disruptiveUpdatePolicy", "ScaleToZero"),
        ("batchcertpool.spec.account.name", "lowercase"),
    ],
)
def test_kubectl_explain_documents_the_field(kube: KubeCluster, path: str, phrase: str) -> None:
    result = kube.kubectl("explain", path, check=True)

    assert phrase in " ".join(result.stdout.split())
