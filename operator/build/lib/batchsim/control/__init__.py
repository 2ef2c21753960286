"""The simulator's control API (``/_sim/...``): what tests, the demo and developers use to seed,
observe, disturb and advance the simulated world.
"""
