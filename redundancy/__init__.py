"""Hot-standby pair: sync link, role state machine, replication (DESIGN sections 5 to 7).

Built on top of the engine's interfaces (:mod:`bms.engine.role`); the engine
never imports this package.
"""
