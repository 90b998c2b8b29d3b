"""ctypes mirror of the runtime's sophon_chip, for tests that call the runtime directly."""
import ctypes


class ChipStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("npu_num", ctypes.c_int32),
                ("lmem_bytes_per_lane", ctypes.c_int64), ("lmem_banks", ctypes.c_int32),
                ("eu_bytes", ctypes.c_int32), ("has_int8", ctypes.c_int32),
                ("clock_hz", ctypes.c_double), ("ddr_bytes_per_second", ctypes.c_double),
                ("power_watts", ctypes.c_double), ("gdma_latency_cycles", ctypes.c_int32),
                ("tiu_latency_cycles", ctypes.c_int32)]


def chip_struct(chip) -> ChipStruct:
    return ChipStruct(chip.name.encode(), chip.npu_num, chip.lmem_bytes_per_lane, chip.lmem_banks,
                      chip.eu_bytes, int(chip.has_int8), chip.clock_hz, chip.ddr_bytes_per_second,
                      chip.power_watts, chip.gdma_latency_cycles, chip.tiu_latency_cycles)
