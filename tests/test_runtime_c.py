"""The runtime's own C unit tests, built with the system compiler (CC honoured,
-Wall -Werror), and the Python side's copy of the lane layout checked against C."""
import ctypes
import itertools
import subprocess

import pytest

from tvm_sophon.cost import ChipStruct, LocalStruct, runtime_library
from tvm_sophon import get_chip, toolchain
from tvm_sophon import runtime as runtime_src
from tvm_sophon.codegen.program import local_lane_bytes


@pytest.mark.parametrize("source", runtime_src.test_sources(), ids=lambda p: p.stem)
def test_runtime_c_unit_tests(tmp_path, source):
    exe = toolchain.build_executable([source, *runtime_src.library_sources()], tmp_path / source.stem)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed, failed = (int(part.split()[0]) for part in summary.split(","))
    assert failed == 0 and passed > 0, summary


@pytest.mark.parametrize("chip_name", ["bm1680"])
def test_python_lane_layout_matches_runtime(chip_name):
    """The allocator's size of a local tensor equals the runtime's
    sophon_local_lane_bytes for every layout and awkward shape."""
    chip = get_chip(chip_name)
    lib = runtime_library()
    c_chip = ChipStruct.of(chip)
    for (n, c, h, w), layout in itertools.product(
            [(1, 3, 7, 7), (2, 64, 1, 1), (1, 65, 31, 31), (8, 17, 5, 1), (1, 1000, 1, 1)],
            ["ALIGNED", "COMPACT"]):
        t = LocalStruct(0, n, c, h, w, 0, 0 if layout == "ALIGNED" else 1)
        expected = lib.sophon_local_lane_bytes(ctypes.byref(c_chip), ctypes.byref(t))
        assert local_lane_bytes(chip, (n, c, h, w), "float32", layout) == expected
