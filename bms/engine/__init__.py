"""The real-time engine: plain asyncio, the only place that runs the hot path.

drivers -> process image -> publish, plus command execution and live
reconfiguration. Database work happens off the loop, on one dedicated
thread, and never per sample.
"""
