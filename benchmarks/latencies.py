"""Per-operation latencies the benchmarks inject into the simulator (one list for all of them)."""

from __future__ import annotations

# Per-operation latencies injected into the simulator (first matching rule wins). Typical
# in-region figures: a synchronous Batch RP pool PUT/PATCH takes about a second, ARM GETs and
# Batch data-plane GETs about 100-150 ms, a Key Vault GET about 50 ms, an Entra token 200 ms.
LATENCIES: list[tuple[str, str, str | None, float]] = [
    ("arm", "PUT", "/pools/", 1.0),
    ("arm", "PATCH", "/pools/", 1.0),
    ("arm", "DELETE", "/pools/", 0.5),
    ("arm", "POST", None, 0.5),
    ("arm", "GET", None, 0.15),
    ("batch", "GET", None, 0.1),
    ("keyvault", "GET", None, 0.05),
    ("entra", "POST", None, 0.2),
]
