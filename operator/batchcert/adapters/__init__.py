"""Adapters: the only modules that talk to Azure (and, through kopf, to Kubernetes).

Each adapter turns SDK results into ``batchcert.models.azure`` values and SDK exceptions into
``batchcert.errors.AzureCallError``; nothing above this package sees an SDK type.
"""
