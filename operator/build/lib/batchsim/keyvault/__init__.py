"""Simulated Key Vault data plane: certificates, versions, policies, renewals, and the X.509
material behind them.
"""
