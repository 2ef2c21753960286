"""One step per concern of a turn: access, pool, certificates, nodes (with diagnosis), verification.

A step takes the turn (``Turn``: the spec, the facts gathered once, the rotation window computed
once) and its own slice of ``ObjectMemory``, and returns a ``StepResult``: its condition, its part
of status, its Events and when it next wants to run. ``reconcile/engine.py`` composes them and
builds one status patch per turn. A new concern adds a module here, a slice in ``memory.py`` and
one line in the engine; a change to how nodes are judged opens ``steps/nodes.py`` and
``assess/nodes.py``, nothing else.
"""
