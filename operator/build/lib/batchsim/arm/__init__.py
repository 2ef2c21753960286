"""Simulated Azure Resource Manager: the request pipeline, Microsoft.Batch pools and accounts, the
resources around them (resource groups, identities, vaults), pool-body rules and ARM error bodies.
"""
