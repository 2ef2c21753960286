"""Pure translation from the BatchCertPool spec to Azure request bodies, and back to decisions.

Every input is an argument; nothing here performs I/O or reads a clock.
"""
