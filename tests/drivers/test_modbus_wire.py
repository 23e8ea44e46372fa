"""Register answers kept as bytes (drivers/modbus_wire.py) decode exactly like pymodbus' own answer classes."""

from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from drivers.base import PointSpec
from drivers.modbus import BlockDecoder, Encoding, encode_registers, plan_reads
from drivers.modbus_wire import HoldingRegistersAnswer

POINTS = [
    PointSpec("f", "hr:0", "float32"),
    PointSpec("u", "hr:2", "uint16"),
    PointSpec("swapped", "hr:3", "int32"),
    PointSpec("bit", "hr:2.9", "bool"),
]
ENCODINGS = {"f": Encoding(), "u": Encoding(), "swapped": Encoding("little", "little"), "bit": Encoding()}


def answers(registers: list[int]) -> tuple[HoldingRegistersAnswer, ReadHoldingRegistersResponse]:
    payload = bytes([2 * len(registers)]) + b"".join(word.to_bytes(2, "big") for word in registers)
    wire, stock = HoldingRegistersAnswer(), ReadHoldingRegistersResponse()
    wire.decode(payload)
    stock.decode(payload)
    return wire, stock


def test_both_answer_classes_give_the_same_values_and_registers():
    (block,) = plan_reads(POINTS, 8)
    registers = [
        *encode_registers(21.5, "float32"),
        (1 << 9) | 7,  # u = 519, bit 9 set
        *encode_registers(-123456, "int32", "little", "little"),
    ]
    wire, stock = answers(registers)
    assert wire.registers == stock.registers == registers  # the list is still there for those who ask
    from_wire, _ = BlockDecoder(block, ENCODINGS).decode(wire)
    from_stock, _ = BlockDecoder(block, ENCODINGS).decode(stock)  # a client without the wire classes
    assert from_wire == from_stock
    assert dict(zip(BlockDecoder(block, ENCODINGS).names, from_wire, strict=True)) == {
        "f": 21.5,
        "u": 519,
        "swapped": -123456,
        "bit": True,
    }
