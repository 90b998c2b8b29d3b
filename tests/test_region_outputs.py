"""Regions that return several values: a fused chain whose intermediate is also
used outside the region (Xception's pre-ReLU sum feeding the skip connection,
NASNet's pre-ReLU conv output), also consumed inside it, and tuple outputs.

Tolerance: rtol = atol = 1e-5. Both sides compute in float32 from the same inputs;
only the summation order of the convs differs (TVM's llvm loops vs the emulator's
reference kernels), a few ulp of the accumulated magnitude.
"""
import numpy as np
import pytest
from tvm import relax

from conftest import assert_close, host_ops, make_module, run_llvm, run_sophon, sophon_regions

RTOL = ATOL = 1e-5  # float32 both sides, different summation order


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _check(mod, params, inputs, regions=1):
    got = run_sophon(mod, params, inputs)
    want = run_llvm(mod, params, inputs)
    assert len(sophon_regions(got.partitioned)) == regions
    assert host_ops(got.partitioned) == []
    outs = got.output if isinstance(got.output, list) else [got.output]
    wants = want if isinstance(want, (list, tuple)) else [want]
    assert len(outs) == len(wants)
    for k, (a, b) in enumerate(zip(outs, wants)):
        assert_close(a, b, rtol=RTOL, atol=ATOL, what=f"output {k}")
    return got


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pre_activation_sum_is_returned_and_used_inside(layout):
    """conv -> add -> relu -> conv, where the add (pre-ReLU) is also an output of
    the model and also feeds a second add inside the region (the skip)."""
    rng = np.random.default_rng(1)
    shape = (1, 5, 7, 7) if layout == "NCHW" else (1, 7, 7, 5)
    kl = "OIHW" if layout == "NCHW" else "HWIO"
    w = _rand(rng, (5, 5, 3, 3) if kl == "OIHW" else (3, 3, 5, 5), 0.3)
    inputs = {"x": _rand(rng, shape), "r": _rand(rng, shape)}

    def body(bb, v):
        conv = dict(padding=1, data_layout=layout, kernel_layout=kl)
        c = bb.emit(relax.op.nn.conv2d(v["x"], v["w"], **conv))
        s = bb.emit(relax.op.add(c, v["r"]))
        y = bb.emit(relax.op.nn.relu(s))
        z = bb.emit(relax.op.nn.conv2d(y, v["w"], **conv))
        skip = bb.emit(relax.op.add(z, s))
        return relax.Tuple([skip, s])

    mod = make_module(inputs, {"w": w}, body)
    _check(mod, {"w": w}, inputs)


def test_pre_relu_conv_output_is_returned():
    """conv + bias + relu fused, with the pre-ReLU conv output used outside."""
    rng = np.random.default_rng(2)
    inputs = {"x": _rand(rng, (1, 3, 9, 9))}
    params = {"w": _rand(rng, (17, 3, 3, 3), 0.3), "b": _rand(rng, (1, 17, 1, 1))}

    def body(bb, v):
        c = bb.emit(relax.op.nn.conv2d(v["x"], v["w"], strides=2))
        cb = bb.emit(relax.op.add(c, v["b"]))
        y = bb.emit(relax.op.nn.relu(cb))
        p = bb.emit(relax.op.nn.max_pool2d(y, pool_size=(2, 2), strides=(2, 2)))
        return relax.Tuple([p, cb])

    mod = make_module(inputs, params, body)
    got = _check(mod, params, inputs)
    # the fused composite (whose intermediate leaves it) is what ran, not a split one
    from tvm_sophon import offload_report
    assert "sophon.conv2d_bias_relu" in offload_report(got.partitioned).offloaded


def test_tuple_output_of_two_branches():
    """Two results of one region returned as a tuple (no intermediate shared)."""
    rng = np.random.default_rng(3)
    inputs = {"x": _rand(rng, (1, 4, 6, 6))}
    params = {"w": _rand(rng, (4, 4, 1, 1))}

    def body(bb, v):
        c = bb.emit(relax.op.nn.conv2d(v["x"], v["w"]))
        a = bb.emit(relax.op.sigmoid(c))
        b = bb.emit(relax.op.nn.relu(c))
        return relax.Tuple([a, b])

    mod = make_module(inputs, params, body)
    _check(mod, params, inputs)


def test_repeated_blocks_share_a_composite_but_not_their_values():
    """Two identical conv -> add -> relu blocks whose pre-ReLU sums both leave the
    region (Xception repeats its block): identical composites share one function,
    yet each call's intermediate is its own value."""
    rng = np.random.default_rng(5)
    inputs = {"x": _rand(rng, (1, 4, 6, 6)), "r": _rand(rng, (1, 4, 6, 6))}
    params = {"w": _rand(rng, (4, 4, 3, 3), 0.3)}

    def body(bb, v):
        sums, y = [], v["x"]
        for _ in range(2):
            c = bb.emit(relax.op.nn.conv2d(y, v["w"], padding=1))
            s = bb.emit(relax.op.add(c, v["r"]))
            y = bb.emit(relax.op.nn.relu(s))
            sums.append(s)
        return relax.Tuple([y, *sums])

    mod = make_module(inputs, params, body)
    _check(mod, params, inputs)


def test_pre_activation_of_a_fused_chain_is_returned():
    """conv + bias + SiLU (x * sigmoid(x), an activation chain fused into the conv)
    whose pre-activation value is also an output (MobileNetV3/EfficientNet-style)."""
    rng = np.random.default_rng(6)
    inputs = {"x": _rand(rng, (1, 3, 7, 7))}
    params = {"w": _rand(rng, (5, 3, 3, 3), 0.3), "b": _rand(rng, (1, 5, 1, 1))}

    def body(bb, v):
        c = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(v["x"], v["w"], padding=1)), v["b"]))
        y = bb.emit(relax.op.multiply(c, bb.emit(relax.op.sigmoid(c))))
        z = bb.emit(relax.op.nn.max_pool2d(y, pool_size=(2, 2), strides=(2, 2)))
        return relax.Tuple([z, c])

    mod = make_module(inputs, params, body)
    got = _check(mod, params, inputs)
    from tvm_sophon import offload_report
    assert "sophon.conv2d_bias_silu" in offload_report(got.partitioned).offloaded
