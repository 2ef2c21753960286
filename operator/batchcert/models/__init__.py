"""Typed models parsed once at the boundary: the BatchCertPool spec and the Azure facts we read.

Nothing here performs I/O; every layer above may import these.
"""
