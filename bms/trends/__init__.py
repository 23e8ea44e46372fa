"""Trending: per-point sampling on the engine loop, COPY into partitioned PostgreSQL, spool, roll-ups (ADR 0015)."""
