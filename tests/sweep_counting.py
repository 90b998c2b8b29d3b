"""A user plan strategy for tests/test_sweep.py, named by import path
(``sweep_counting:counting_dp``): the default strategy, but every call appends
the chip's LMEM size to the file named by $SWEEP_COUNT_FILE, so a test can count
which points a sweep really planned (the calls happen in Ray's workers)."""
import os

from tvm_sophon.layer_groups import plan_dp


def counting_dp(region, chip):
    with open(os.environ["SWEEP_COUNT_FILE"], "a") as f:
        f.write(f"{chip.lmem_bytes_per_lane}\n")
    return plan_dp(region, chip)
