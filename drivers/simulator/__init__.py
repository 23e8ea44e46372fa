"""A simulated building behind a real pymodbus TCP server and a bacpypes3 BACnet/IP device, for the demo and tests."""
