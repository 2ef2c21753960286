"""The Azure simulator (dev/test tooling; operator code never imports it).

See ``README.md`` in this folder for addressing, the control API and the demo seed.
"""
