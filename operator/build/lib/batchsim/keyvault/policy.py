"""Key Vault certificate policies for the simulator: parse, validate, default, and renewal math.

Role: pure functions (no clock, no I/O) turning the snake_case policy JSON of the Key Vault REST
API into a complete, validated policy dict, and computing when an ``AutoRenew`` lifetime action
is due. Also home of ``KeyVaultError``, the one error type the simulated data plane answers with.

Policy JSON (REST, snake_case; ``secret_props.contentType`` is the one camelCase field)::

    {"key_props": {"exportable", "kty", "key_size", "reuse_key", "crv"},
     "secret_props": {"contentType"},
     "x509_props": {"subject", "sans", "ekus", "key_usage", "validity_months", "basic_constraints"},
     "lifetime_actions": [{"trigger": {"lifetime_percentage": 80} | {"days_before_expiry": 30},
                           "action": {"action_type": "AutoRenew" | "EmailContacts"}}],
     "issuer": {"name", "cty", "cert_transparency"}, "attributes": {"enabled"}}

Invariants:
* ``normalize_policy`` returns a policy with every section and default filled in (the defaults
  the real service reports for a policy created with only a subject, per the SDK recordings),
  or raises ``KeyVaultError`` 400 ``BadParameter``; it never raises anything else.
* ``lifetime_percentage`` is 1..99; ``days_before_expiry`` is 1..27 × ``validity_months``.
* ``renewal_due_at`` only ever looks at ``AutoRenew`` actions; ``EmailContacts`` never renews.
"""

from __future__ import annotations

import copy
from typing import Any

from batchsim.keyvault.x509 import KEY_USAGES, parse_subject

CONTENT_TYPES = ("application/x-pkcs12", "application/x-pem-file")
KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM")
RSA_KEY_SIZES = (2048, 3072, 4096)
CURVES = ("P-256", "P-384", "P-521", "P-256K")
ACTION_TYPES = ("AutoRenew", "EmailContacts")
DEFAULT_EKUS = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]  # serverAuth, clientAuth
DEFAULT_KEY_USAGE = ["digitalSignature", "keyEncipherment"]
# What the real service fills in when a policy names no lifetime actions (Self issuer).
DEFAULT_LIFETIME_ACTIONS = [
    {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
]
# Unconfirmed: the upper bound Key Vault enforces on validity_months for self-signed certificates.
MAX_VALIDITY_MONTHS = 1200
SUPPORTED_ISSUERS = ("Self",)
_SAN_KINDS = ("emails", "dns_names", "upns", "uris", "ip_addresses")
_SECONDS_PER_DAY = 86_400


class KeyVaultError(Exception):
    """An answer of the simulated data plane: HTTP status plus the Key Vault error body."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner is not None:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def bad_parameter(message: str) -> KeyVaultError:
    return KeyVaultError(400, "BadParameter", message)


def invalid_property(path: str, value: Any = None, why: str = "") -> KeyVaultError:
    # "Property policy has invalid value" is the real wording for a policy it cannot read
    # (azure-cli issue 27220); the path and reason after it are our addition.
    detail = f" {why}" if why else ""
    shown = f" ({value!r})" if value is not None else ""
    return bad_parameter(f"Property {path} has invalid value{shown}.{detail}".rstrip())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_property(path, value, "It must be a JSON object.")
    return value


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_property(path, value, "It must be a list of strings.")
    return list(value)


def _merge(existing: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(existing)
    merged.update(update)
    return merged


def normalize_policy(raw: Any, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``raw`` (merged over ``existing`` when updating) into a complete policy dict.

    Update semantics (``existing`` given): each object section supplied is merged key by key into
    the stored one; ``lifetime_actions`` supplied replaces the list. Unconfirmed: the service's
    exact PATCH merge rules; the SDKs always send whole sections, for which both readings agree.
    """
    body = _object(raw, "policy")
    base = copy.deepcopy(existing) if existing is not None else {}
    sections: dict[str, dict[str, Any]] = {}
    for section in ("key_props", "secret_props", "x509_props", "issuer", "attributes"):
        sections[section] = _merge(
            base.get(section, {}), _object(body.get(section), f"policy.{section}")
        )

    key = _normalize_key_props(sections["key_props"])
    secret = _normalize_secret_props(sections["secret_props"])
    x509_props = _normalize_x509_props(sections["x509_props"])
    issuer = _normalize_issuer(sections["issuer"])
    enabled = sections["attributes"].get("enabled", True)
    if not isinstance(enabled, bool):
        raise invalid_property("policy.attributes.enabled", enabled, "It must be a boolean.")

    if "lifetime_actions" in body and body["lifetime_actions"] is not None:
        actions = body["lifetime_actions"]
    elif "lifetime_actions" in base:
        actions = base["lifetime_actions"]
    else:
        actions = copy.deepcopy(DEFAULT_LIFETIME_ACTIONS)
    lifetime_actions = validate_lifetime_actions(actions, x509_props["validity_months"])

    return {
        "key_props": key,
        "secret_props": secret,
        "x509_props": x509_props,
        "lifetime_actions": lifetime_actions,
        "issuer": issuer,
        "attributes": {"enabled": enabled},
    }


def _normalize_key_props(props: dict[str, Any]) -> dict[str, Any]:
    kty = props.get("kty", "RSA")
    if kty not in KEY_TYPES:
        raise invalid_property("policy.key_props.kty", kty, f"Supported: {', '.join(KEY_TYPES)}.")
    out: dict[str, Any] = {"exportable": props.get("exportable", True), "kty": kty}
    if kty.startswith("RSA"):
        size = props.get("key_size") if props.get("key_size") is not None else 2048
        if not _is_int(size) or size not in RSA_KEY_SIZES:
            raise invalid_property("policy.key_props.key_size", size, "Use 2048, 3072 or 4096.")
        out["key_size"] = size
    else:
        crv = props.get("crv") if props.get("crv") is not None else "P-256"
        if crv not in CURVES:
            raise invalid_property("policy.key_props.crv", crv, f"Use one of {', '.join(CURVES)}.")
        out["crv"] = crv
    out["reuse_key"] = props.get("reuse_key", False)
    for flag in ("exportable", "reuse_key"):
        if not isinstance(out[flag], bool):
            raise invalid_property(f"policy.key_props.{flag}", out[flag], "It must be a boolean.")
    return out


def _normalize_secret_props(props: dict[str, Any]) -> dict[str, Any]:
    content_type = props.get("contentType") or "application/x-pkcs12"
    if content_type not in CONTENT_TYPES:
        raise invalid_property(
            "policy.secret_props.contentType", content_type, f"Use {' or '.join(CONTENT_TYPES)}."
        )
    return {"contentType": content_type}


def _normalize_x509_props(props: dict[str, Any]) -> dict[str, Any]:
    subject = props.get("subject")
    sans_raw = _object(props.get("sans"), "policy.x509_props.sans")
    sans = {
        k: _string_list(v, f"policy.x509_props.sans.{k}")
        for k, v in sans_raw.items()
        if k in _SAN_KINDS and v is not None
    }
    if subject is not None and not isinstance(subject, str):
        raise invalid_property("policy.x509_props.subject", subject, "It must be a string.")
    if not subject and not any(sans.values()):
        # The SDKs refuse this client-side; the service's wording is unconfirmed.
        raise bad_parameter(
            "Property policy.x509_props must specify a subject or subject alternative names."
        )
    if subject:
        try:
            parse_subject(subject)
        except ValueError as exc:
            raise invalid_property("policy.x509_props.subject", subject, str(exc)) from exc
    ekus = props.get("ekus")
    ekus = DEFAULT_EKUS[:] if ekus is None else _string_list(ekus, "policy.x509_props.ekus")
    usage = props.get("key_usage")
    usage = (
        DEFAULT_KEY_USAGE[:]
        if usage is None
        else _string_list(usage, "policy.x509_props.key_usage")
    )
    unknown = [u for u in usage if u not in KEY_USAGES]
    if unknown:
        raise invalid_property("policy.x509_props.key_usage", unknown)
    months: Any = props.get("validity_months")
    months = 12 if months is None else months
    if not _is_int(months) or not 1 <= months <= MAX_VALIDITY_MONTHS:
        raise invalid_property(
            "policy.x509_props.validity_months",
            months,
            f"It must be an integer between 1 and {MAX_VALIDITY_MONTHS}.",
        )
    return {
        "subject": subject or "",
        "sans": sans,
        "ekus": ekus,
        "key_usage": usage,
        "validity_months": months,
        "basic_constraints": {"ca": False},
    }


def _normalize_issuer(props: dict[str, Any]) -> dict[str, Any]:
    name = props.get("name") if props.get("name") is not None else "Self"
    if not isinstance(name, str) or not name:
        raise invalid_property("policy.issuer.name", name, "It must be a non-empty string.")
    if name.lower() not in {s.lower() for s in SUPPORTED_ISSUERS}:
        # Unconfirmed: the real service accepts "Unknown" (CSR merged later) and named issuers
        # configured in the vault; the simulator only issues self-signed certificates.
        raise bad_parameter(f"Issuer '{name}' is not supported by the simulator: use 'Self'.")
    out: dict[str, Any] = {"name": "Self"}
    for optional in ("cty", "cert_transparency"):
        if props.get(optional) is not None:
            out[optional] = props[optional]
    return out


def validate_lifetime_actions(actions: Any, validity_months: int) -> list[dict[str, Any]]:
    """Check lifetime actions against the documented ranges; returns a clean copy."""
    if not isinstance(actions, list):
        raise invalid_property("policy.lifetime_actions", actions, "It must be a list.")
    out: list[dict[str, Any]] = []
    limit = 27 * validity_months
    for i, action in enumerate(actions):
        path = f"policy.lifetime_actions[{i}]"
        action = _object(action, path)
        trigger = _object(action.get("trigger"), f"{path}.trigger")
        kind = _object(action.get("action"), f"{path}.action").get("action_type")
        if kind not in ACTION_TYPES:
            raise invalid_property(
                f"{path}.action.action_type", kind, "Use AutoRenew or EmailContacts."
            )
        given = {
            k: v
            for k, v in trigger.items()
            if k in ("lifetime_percentage", "days_before_expiry") and v is not None
        }
        if len(given) != 1:
            # Unconfirmed wording: exactly one trigger kind is required by the spec's description.
            raise invalid_property(
                f"{path}.trigger",
                trigger or None,
                "Specify exactly one of lifetime_percentage or days_before_expiry.",
            )
        ((field, value),) = given.items()
        if field == "lifetime_percentage" and not (_is_int(value) and 1 <= value <= 99):
            raise invalid_property(
                f"{path}.trigger.lifetime_percentage", value, "It must be between 1 and 99."
            )
        if field == "days_before_expiry" and not (_is_int(value) and 1 <= value <= limit):
            raise invalid_property(
                f"{path}.trigger.days_before_expiry",
                value,
                f"It must be between 1 and {limit} (27 x validity_months {validity_months}).",
            )
        out.append({"trigger": {field: value}, "action": {"action_type": kind}})
    return out


def renewal_due_at(lifetime_actions: list[dict[str, Any]], nbf: float, exp: float) -> float | None:
    """The instant (Unix seconds) the earliest AutoRenew action fires for a version, or None.

    ``lifetime_percentage`` p fires at ``nbf + p% × (exp - nbf)``; ``days_before_expiry`` d at
    ``exp - d days``. Unconfirmed: whether Key Vault measures the lifetime from the certificate's
    notBefore (ten minutes before issuance) or from its creation time; the difference is
    minutes against a lifetime of at least a month. Also unconfirmed: real Key Vault runs the
    action some time after the trigger point (hours); the simulator fires exactly at it.
    """
    due: float | None = None
    for action in lifetime_actions:
        if action["action"]["action_type"] != "AutoRenew":
            continue
        trigger = action["trigger"]
        if "lifetime_percentage" in trigger:
            at = nbf + (exp - nbf) * trigger["lifetime_percentage"] / 100.0
        else:
            at = exp - trigger["days_before_expiry"] * _SECONDS_PER_DAY
        due = at if due is None else min(due, at)
    return due


def render_policy(
    policy: dict[str, Any], policy_id: str, created: int, updated: int
) -> dict[str, Any]:
    """The policy as GET /certificates/{name}/policy returns it."""
    body = copy.deepcopy(policy)
    body["attributes"] = {
        "enabled": policy["attributes"]["enabled"],
        "created": created,
        "updated": updated,
    }
    return {"id": policy_id, **body}
