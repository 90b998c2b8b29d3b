"""Constant weights: PlanRegions marks the region parameters every call passes a
Constant (the ``sophon.constants`` attribute), the program loads them with
sophon_gdma_load_constant (deferred; runtime/tests/test_deferred.c tests the
deferral against plain loads), and a model so built gives the same output bits as
the same model with its weights passed at run time, call after call."""
import json

import numpy as np
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon import codegen
from tvm_sophon.passes import PlanRegions

from conftest import assert_close, make_module, run_llvm, sophon_regions


def _conv_relu_conv(rng):
    inputs = {"x": rng.standard_normal((1, 8, 12, 12)).astype("float32")}
    params = {"w": rng.standard_normal((24, 8, 3, 3)).astype("float32"),
              "w2": rng.standard_normal((16, 24, 1, 1)).astype("float32")}

    def body(bb, v):
        y = bb.emit(relax.op.nn.relu(relax.op.nn.conv2d(v["x"], v["w"], padding=1)))
        return relax.op.nn.conv2d(y, v["w2"])

    return make_module(inputs, params, body), inputs, params


def _constants(mod):
    planned = PlanRegions()(mod)
    return {name: json.loads(str(func.attrs[codegen.CONSTANTS_ATTR]))
            for name, func in sophon_regions(planned).items()}, planned


def test_bound_weights_are_marked_constant_and_inputs_are_not(rng):
    mod, _, params = _conv_relu_conv(rng)
    marked, planned = _constants(tvm_sophon.partition_for_sophon(mod, params))
    ((name, constant),) = marked.items()
    func = sophon_regions(planned)[name]
    shapes = [tuple(int(d) for d in p.ty.shape) for p in func.params]
    # every parameter but the image is a weight the caller passes as a Constant
    assert sorted(shapes[i] for i in constant) == sorted(
        s for s in shapes if s != (1, 8, 12, 12))
    program = codegen.lower_function(func)
    assert program.constant_inputs == frozenset(constant)
    assert "_constant[] = {" in codegen.generate_source([func])


def test_weights_passed_at_run_time_are_not_constant(rng):
    mod, _, _ = _conv_relu_conv(rng)
    marked, planned = _constants(tvm_sophon.partition_for_sophon(mod))
    assert all(not c for c in marked.values())
    assert "_constant[]" not in codegen.generate_source(list(sophon_regions(planned).values()))


def test_constant_weights_give_the_bits_of_run_time_weights(rng):
    mod, inputs, params = _conv_relu_conv(rng)
    bound = tvm_sophon.build(tvm_sophon.partition_for_sophon(mod, params))
    passed = tvm_sophon.build(tvm_sophon.partition_for_sophon(mod))
    vm_bound = relax.VirtualMachine(bound, tvm.cpu())
    vm_passed = relax.VirtualMachine(passed, tvm.cpu())
    tensors = {k: tvm.runtime.tensor(v) for k, v in {**inputs, **params}.items()}
    want = vm_passed["main"](tensors["x"], tensors["w"], tensors["w2"]).numpy()
    for _ in range(3):  # the first call packs the weights, the next ones reuse them
        got = vm_bound["main"](tensors["x"]).numpy()
        assert np.array_equal(got, want)
    # against TVM's llvm build: f32 sums in another order (fused multiply-adds,
    # K = 72 and 24), within a few ulps of the products' magnitude
    assert_close(got, run_llvm(mod, params, inputs), rtol=1e-4, atol=1e-4, what="conv relu conv")
