"""Protocol adapters: the driver contract and one module per field protocol.

Nothing in this package imports Django, the engine, alarms or the channel
layer: a driver turns point addresses into protocol requests and raw values
back into Python values, and that is all it does.
"""
