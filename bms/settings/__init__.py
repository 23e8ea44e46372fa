"""Settings: ``base`` plus one module per deployment shape (embedded, production, test)."""
