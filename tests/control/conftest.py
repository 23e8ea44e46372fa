from tests.engine.conftest import engine, layer, plant  # noqa: F401  (shared engine fixtures)
