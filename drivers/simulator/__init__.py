"""A simulated building behind a real pymodbus TCP server, for the demo and the tests."""
