"""ctypes mirrors of the runtime's INT8 instruction parameters (runtime/sophon_quant.h)
and of sophon_global (runtime/sophon.h), shared by the tests that call the INT8
instructions one at a time (test_int8_kernels.py, test_fast_int8.py). The f32
parameter structs (conv, pool, activation) are tvm_sophon.cost's."""
from __future__ import annotations

import ctypes

import numpy as np


class Requant(ctypes.Structure):  # sophon_requant
    _fields_ = [("input_zero_point", ctypes.c_int32), ("output_zero_point", ctypes.c_int32),
                ("act_min", ctypes.c_int32), ("act_max", ctypes.c_int32),
                ("per_channel", ctypes.c_int32),
                ("multiplier", ctypes.POINTER(ctypes.c_int32)),
                ("shift", ctypes.POINTER(ctypes.c_int32)),
                ("rounding", ctypes.c_int32), ("scale", ctypes.POINTER(ctypes.c_double)),
                ("input_scale", ctypes.c_float), ("output_scale", ctypes.c_float),
                ("k_block", ctypes.c_int32)]


class AddParams(ctypes.Structure):  # sophon_add_int8_params
    _fields_ = [(name, ctypes.c_int32) for name in (
        "left_shift", "input1_zero_point", "input2_zero_point", "output_zero_point",
        "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
        "output_multiplier", "output_shift", "act_min", "act_max")]


class GlobalStruct(ctypes.Structure):  # sophon_global
    _fields_ = [("data", ctypes.c_void_p), ("n", ctypes.c_int32), ("c", ctypes.c_int32),
                ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("stride_n", ctypes.c_int64),
                ("stride_c", ctypes.c_int64), ("stride_h", ctypes.c_int64),
                ("stride_w", ctypes.c_int64), ("dtype", ctypes.c_int)]

    @classmethod
    def of(cls, array: np.ndarray, dtype: int) -> "GlobalStruct":
        """A 4-D array in host memory (strides in elements) as a DDR tensor of `dtype`."""
        assert array.ndim == 4
        strides = [s // array.itemsize for s in array.strides]
        return cls(array.ctypes.data, *array.shape, *strides, dtype)
