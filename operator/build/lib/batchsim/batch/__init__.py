"""Simulated Batch data plane: nodes, their VM extensions (the Key Vault extension run logically on
each node), and the data-plane HTTP surface the operator's ``azure-batch`` client reads.
"""
