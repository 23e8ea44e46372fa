"""The REST API, version 1, under ``/api/v1/``: the base every endpoint uses and the endpoints themselves.

Base: :mod:`~bms.api.v1.auth` (who), :mod:`~bms.api.v1.permissions` (may they),
:mod:`~bms.api.v1.parsers` (bounded JSON bodies), :mod:`~bms.api.v1.fields`
(strict types), :mod:`~bms.api.v1.pagination`, :mod:`~bms.api.v1.errors` (one
JSON error shape), :mod:`~bms.api.v1.docs` (schema, Swagger UI, Redoc served by
the node). Endpoints: :mod:`~bms.api.v1.alarms`, :mod:`~bms.api.v1.pair`.
Routes: :mod:`~bms.api.v1.urls`. How to use it: docs/api.md.
"""
