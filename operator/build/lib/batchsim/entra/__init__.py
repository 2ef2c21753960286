"""Simulated Entra ID: OpenID configuration, the token endpoint, and the token format."""
