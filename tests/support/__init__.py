"""Helpers shared by the test tiers (importable as ``support``: ``tests/`` is the rootdir conftest's
folder, which pytest puts on ``sys.path``)."""
