"""Logic: rules whose inputs are points and whose outputs go through the command path at a priority (issue 12).

Pure modules (no Django, no clock): :mod:`bms.logic.expr` (expressions),
:mod:`bms.logic.blocks` (stateful blocks), :mod:`bms.logic.spec` (the rule as
the engine runs it, and its checks) and :mod:`bms.logic.runner` (running the
rules). Django: :mod:`bms.logic.models` (the ``Rule`` configuration),
:mod:`bms.logic.store` (loading the specs), admin and signals.
"""
