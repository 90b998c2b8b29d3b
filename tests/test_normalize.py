"""The normalisation passes one by one: what they rewrite, what they must leave
alone, and that the rewritten module computes the same (TVM's llvm build of the
original as reference)."""
import numpy as np
import pytest
import tvm
from tvm import relax, topi
from tvm.script import relax as R

from tvm_sophon import normalize as N
from conftest import host_ops

RNG = np.random.default_rng(0)


def _bind(mod, params):
    return relax.transform.BindParams("main", {k: tvm.runtime.tensor(v) for k, v in params.items()})(mod)


def _llvm(mod, *arrays):
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    out = vm["main"](*map(tvm.runtime.tensor, arrays))
    return out.numpy() if hasattr(out, "numpy") else out[0].numpy()


# ------------------------------------------------------------------ batch norm

@tvm.script.ir_module
class ConvBiasBN:
    @R.function
    def main(x: R.Tensor((1, 3, 6, 6), "float32"), w: R.Tensor((4, 3, 3, 3), "float32"),
             b: R.Tensor((1, 4, 1, 1), "float32"), gamma: R.Tensor((4,), "float32"),
             beta: R.Tensor((4,), "float32"), mean: R.Tensor((4,), "float32"), var: R.Tensor((4,), "float32")):
        with R.dataflow():
            y = R.add(R.nn.conv2d(x, w, padding=1), b)
            bn = R.nn.batch_norm(y, gamma, beta, mean, var, axis=1, epsilon=1e-3, training=False)
            out = R.nn.relu(bn[0])
            R.output(out)
        return out


@tvm.script.ir_module
class NHWCConvBN:
    @R.function
    def main(x: R.Tensor((1, 6, 6, 3), "float32"), w: R.Tensor((3, 3, 3, 4), "float32"),
             gamma: R.Tensor((4,), "float32"), beta: R.Tensor((4,), "float32"),
             mean: R.Tensor((4,), "float32"), var: R.Tensor((4,), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=1, data_layout="NHWC", kernel_layout="HWIO")
            bn = R.nn.batch_norm(y, gamma, beta, mean, var, axis=3, training=False)
            out = bn[0]
            R.output(out)
        return out


@tvm.script.ir_module
class LoneBN:
    @R.function
    def main(x: R.Tensor((1, 4, 5, 5), "float32"), gamma: R.Tensor((4,), "float32"),
             beta: R.Tensor((4,), "float32"), mean: R.Tensor((4,), "float32"), var: R.Tensor((4,), "float32")):
        with R.dataflow():
            bn = R.nn.batch_norm(R.nn.relu(x), gamma, beta, mean, var, axis=1, training=False)
            out = bn[0]
            R.output(out)
        return out


def _bn_params(c=4):
    return {"gamma": RNG.uniform(0.5, 1.5, c).astype("float32"), "beta": RNG.standard_normal(c).astype("float32"),
            "mean": RNG.standard_normal(c).astype("float32"), "var": RNG.uniform(0.5, 2, c).astype("float32")}


@pytest.mark.parametrize("module, weights, x_shape", [
    (ConvBiasBN, {"w": (4, 3, 3, 3), "b": (1, 4, 1, 1)}, (1, 3, 6, 6)),
    (NHWCConvBN, {"w": (3, 3, 3, 4)}, (1, 6, 6, 3)),
], ids=["nchw_biased", "nhwc_unbiased"])
def test_batch_norm_folds_into_conv(module, weights, x_shape):
    params = {k: RNG.standard_normal(s).astype("float32") for k, s in weights.items()} | _bn_params()
    mod = _bind(module, params)
    folded = N.normalize(mod)
    names = host_ops(folded)
    assert "relax.nn.batch_norm" not in names
    assert names.count("relax.nn.conv2d") == 1 and names.count("relax.add") == 1
    assert "relax.multiply" not in names  # the scale went into the weights, not an extra op
    x = RNG.standard_normal(x_shape).astype("float32")
    # folding reorders float32 roundings (scale before vs after the sum of 27 terms)
    np.testing.assert_allclose(_llvm(folded, x), _llvm(mod, x), rtol=1e-5, atol=1e-5)


def test_batch_norm_alone_becomes_multiply_add():
    mod = _bind(LoneBN, _bn_params())
    out = N.normalize(mod)
    names = host_ops(out)
    assert "relax.nn.batch_norm" not in names
    assert names == ["relax.nn.relu", "relax.multiply", "relax.add"]
    x = RNG.standard_normal((1, 4, 5, 5)).astype("float32")
    np.testing.assert_allclose(_llvm(out, x), _llvm(mod, x), rtol=1e-5, atol=1e-6)


def test_batch_norm_with_unbound_statistics_is_left_alone():
    # gamma & co. are function parameters, not constants: nothing to fold
    assert "relax.nn.batch_norm" in host_ops(N.normalize(LoneBN))


@tvm.script.ir_module
class TrainingBN:
    @R.function
    def main(x: R.Tensor((2, 4, 5, 5), "float32"), gamma: R.Tensor((4,), "float32"),
             beta: R.Tensor((4,), "float32"), mean: R.Tensor((4,), "float32"), var: R.Tensor((4,), "float32")):
        with R.dataflow():
            bn = R.nn.batch_norm(x, gamma, beta, mean, var, axis=1, training=True)
            out = bn[0]
            R.output(out)
        return out


def test_training_batch_norm_is_left_alone():
    # training mode normalises with the batch's own statistics: not an affine map
    assert "relax.nn.batch_norm" in host_ops(N.normalize(_bind(TrainingBN, _bn_params())))


# ------------------------------------------------------------------ ONNX clip


def _te_module(kind, bound_as):
    """x -> topi.maximum/minimum(x, bound) through call_tir, the way TVM's ONNX importer emits Clip."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 3, 3), "float32"))
    op = topi.maximum if kind == "maximum" else topi.minimum
    with bb.function("main", [x]):
        with bb.dataflow():
            if bound_as == "literal":
                y = bb.emit_te(op, x, 0.5)
            else:
                y = bb.emit_te(op, x, relax.const(0.5, "float32"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
@pytest.mark.parametrize("bound_as", ["literal", "tensor"])
def test_tir_min_max_lifts_to_relax(kind, bound_as):
    mod = _te_module(kind, bound_as)
    assert host_ops(mod) == ["relax.call_tir"]
    lifted = N.normalize(mod)
    assert host_ops(lifted) == [f"relax.{kind}"]
    assert not any(isinstance(f, tvm.tirx.PrimFunc) for f in lifted.functions.values())  # dead loops removed
    x = RNG.standard_normal((1, 4, 3, 3)).astype("float32")
    np.testing.assert_array_equal(_llvm(lifted, x), _llvm(mod, x))


def test_other_tir_loops_are_not_mistaken_for_min_max():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit_te(topi.add, x, 0.5))
        bb.emit_func_output(out)
    assert host_ops(N.normalize(bb.get())) == ["relax.call_tir"]


@tvm.script.ir_module
class MaxMin:
    @R.function
    def main(x: R.Tensor((1, 4, 3, 3), "float32")):
        with R.dataflow():
            a = R.maximum(x, R.const(0.0, "float32"))
            out = R.minimum(a, R.const(6.0, "float32"))
            R.output(out)
        return out


@tvm.script.ir_module
class MaxMinInfinite:
    @R.function
    def main(x: R.Tensor((1, 4, 3, 3), "float32")):
        with R.dataflow():
            a = R.maximum(x, R.const(float("-inf"), "float32"))
            out = R.minimum(a, R.const(6.0, "float32"))
            R.output(out)
        return out


@tvm.script.ir_module
class MaxMinBroadcast:
    @R.function
    def main(x: R.Tensor((4, 1), "float32")):
        with R.dataflow():
            a = R.maximum(x, R.const(np.zeros((1, 3), "float32")))
            out = R.minimum(a, R.const(6.0, "float32"))
            R.output(out)
        return out


def test_min_max_pair_becomes_clip():
    out = N.MinMaxToClip()(MaxMin)
    out = relax.transform.DeadCodeElimination()(out)
    assert host_ops(out) == ["relax.clip"]
    call = out["main"].body.blocks[0].bindings[-1].value
    assert [float(a.value) for a in call.args[1:]] == [0.0, 6.0]
    x = (RNG.standard_normal((1, 4, 3, 3)) * 10).astype("float32")
    np.testing.assert_array_equal(_llvm(out, x), np.clip(x, 0, 6))


@pytest.mark.parametrize("module", [MaxMinInfinite, MaxMinBroadcast], ids=["infinite_bound", "broadcasting_bound"])
def test_min_max_pair_that_is_not_a_clip_stays(module):
    assert host_ops(N.MinMaxToClip()(module)) == ["relax.maximum", "relax.minimum"]


# ------------------------------------------------------------------ constant operand last


@tvm.script.ir_module
class BiasFirst:
    @R.function
    def main(x: R.Tensor((1, 8), "float32")):
        with R.dataflow():
            y = R.matmul(x, R.const(np.ones((8, 4), "float32")))
            out = R.add(R.const(np.arange(4, dtype="float32")), y)
            R.output(out)
        return out


def test_constant_operand_moves_last():
    out = N.ConstantOperandLast()(BiasFirst)
    add = out["main"].body.blocks[0].bindings[-1].value
    assert add.op.name == "relax.add"
    assert isinstance(add.args[0], relax.Var) and isinstance(add.args[1], tvm.ir.expr.Constant)
    x = RNG.standard_normal((1, 8)).astype("float32")
    np.testing.assert_array_equal(_llvm(out, x), _llvm(BiasFirst, x))


# ------------------------------------------------------------------ identities, ONNX Sum/Max/Min/Mean

def _stack_reduce_module(reduce, n, rhs_shape):
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType((1, 3, 4, 4) if i == 0 else rhs_shape, "float32")) for i in range(n)]
    with bb.function("main", xs):
        with bb.dataflow():
            spread = [bb.emit(relax.op.broadcast_to(x, (1, 3, 4, 4))) for x in xs]
            stacked = bb.emit(relax.op.stack(relax.Tuple(spread), axis=0))
            out = bb.emit_output(bb.emit(reduce(stacked, axis=[0])))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("reduce, op", [(relax.op.sum, "relax.add"), (relax.op.max, "relax.maximum"),
                                        (relax.op.min, "relax.minimum"), (relax.op.mean, "relax.add")])
@pytest.mark.parametrize("n, rhs_shape", [(2, (1, 3, 4, 4)), (3, (1, 3, 1, 1))])
def test_stack_reduce_becomes_binary_ops(reduce, op, n, rhs_shape):
    mod = _stack_reduce_module(reduce, n, rhs_shape)
    out = N.StackReduceToBinary()(mod)
    out = relax.transform.DeadCodeElimination()(out)
    names = host_ops(out)
    assert "relax.stack" not in names and "relax.broadcast_to" not in names
    assert names.count(op) == n - 1
    arrays = [RNG.standard_normal([int(d) for d in p.ty.shape.values]).astype("float32")
              for p in mod["main"].params]
    # the same float32 additions (mean: times 1/n instead of a division), a few ulp
    np.testing.assert_allclose(_llvm(out, *arrays), _llvm(mod, *arrays), rtol=1e-6, atol=1e-6)


@tvm.script.ir_module
class Identities:
    @R.function
    def main(x: R.Tensor((1, 4, 3, 3), "float32")):
        with R.dataflow():
            y = R.reshape(x, (1, 4, 3, 3))
            d = R.nn.dropout(y, rate=0.5)
            z = R.nn.relu(d[0])
            f = R.reshape(z, (1, 36))
            R.output(f)
        return f


def test_dropout_and_noop_reshape_are_removed_real_reshape_stays():
    out = relax.transform.DeadCodeElimination()(N.RemoveIdentities()(Identities))
    assert host_ops(out) == ["relax.nn.relu", "relax.reshape"]
    x = RNG.standard_normal((1, 4, 3, 3)).astype("float32")
    np.testing.assert_array_equal(_llvm(out, x), np.maximum(x, 0).reshape(1, 36))


# ------------------------------------------------------------------ element-wise arithmetic


def _unary_module(shape, body):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def _f32(value):
    return relax.const(np.float32(value), "float32")


def test_nested_clips_merge():
    # torch.export's relu6: clip(clip(x, 0, inf), -inf, 6)
    mod = _unary_module((1, 4, 3, 3), lambda bb, x: relax.op.clip(
        bb.emit(relax.op.clip(x, 0.0, float("inf"))), float("-inf"), 6.0))
    out = relax.transform.DeadCodeElimination()(N.MergeClips()(mod))
    assert host_ops(out) == ["relax.clip"]
    x = (RNG.standard_normal((1, 4, 3, 3)) * 10).astype("float32")
    np.testing.assert_array_equal(_llvm(out, x), _llvm(mod, x))  # exact: clamping is monotone


def test_disjoint_clips_stay():
    mod = _unary_module((4,), lambda bb, x: relax.op.clip(bb.emit(relax.op.clip(x, 0.0, 1.0)), 2.0, 3.0))
    assert host_ops(N.MergeClips()(mod)) == ["relax.clip", "relax.clip"]


@pytest.mark.parametrize("op", [relax.op.multiply, relax.op.divide])
def test_scale_by_one_goes(op):
    mod = _unary_module((2, 3), lambda bb, x: relax.op.nn.relu(bb.emit(op(x, _f32(1.0)))))
    assert host_ops(N.RemoveScaleByOne()(mod)) == ["relax.nn.relu"]


def test_scale_by_one_that_broadcasts_stays():
    mod = _unary_module((3,), lambda bb, x: relax.op.multiply(x, relax.const(np.ones((2, 1), "float32"))))
    assert host_ops(N.RemoveScaleByOne()(mod)) == ["relax.multiply"]


@pytest.mark.parametrize("divisor", [6.0, 3.0, 7.0, 1.4142135, 255.0, 0.1, 0.25])
def test_divide_by_constant_becomes_multiply(divisor):
    mod = _unary_module((64, 1024), lambda bb, x: relax.op.divide(x, _f32(divisor)))
    out = N.DivideByConstant()(mod)
    assert host_ops(out) == ["relax.multiply"]
    x = (RNG.standard_normal((64, 1024)) * 10).astype("float32")
    got, want = _llvm(out, x), _llvm(mod, x)
    ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
    # bound 2 ulp (DivideByConstant's docstring); measured 1 ulp on these divisors
    assert ulps.max() <= (0 if divisor == 0.25 else 2), ulps.max()


@pytest.mark.parametrize("divisor", [0.0, float("inf"), float("nan"), 1e-40, 3e38])
def test_divide_by_awkward_constant_stays(divisor):
    # zero, inf, NaN, a subnormal, and one whose reciprocal would be subnormal
    mod = _unary_module((4,), lambda bb, x: relax.op.divide(x, _f32(divisor)))
    assert host_ops(N.DivideByConstant()(mod)) == ["relax.divide"]


def test_divide_by_per_channel_constant_becomes_multiply():
    c = RNG.uniform(0.5, 4.0, (1, 5, 1, 1)).astype("float32")
    mod = _unary_module((1, 5, 3, 3), lambda bb, x: relax.op.divide(x, relax.const(c)))
    out = N.DivideByConstant()(mod)
    assert host_ops(out) == ["relax.multiply"]
    x = RNG.standard_normal((1, 5, 3, 3)).astype("float32")
    np.testing.assert_allclose(_llvm(out, x), _llvm(mod, x), rtol=2.4e-7, atol=0)  # 2 ulp, see above


def test_power_two_and_half():
    mod = _unary_module((2, 50), lambda bb, x: relax.op.add(
        bb.emit(relax.op.power(x, _f32(2.0))), bb.emit(relax.op.power(bb.emit(relax.op.abs(x)), _f32(0.5)))))
    out = relax.transform.DeadCodeElimination()(N.PowerToMultiply()(mod))
    assert sorted(host_ops(out)) == ["relax.abs", "relax.add", "relax.multiply", "relax.sqrt"]
    x = (RNG.standard_normal((2, 50)) * 10).astype("float32")
    np.testing.assert_array_equal(_llvm(out, x), _llvm(mod, x))  # x*x and sqrt round as powf does here


def test_other_powers_stay():
    mod = _unary_module((4,), lambda bb, x: relax.op.power(x, _f32(3.0)))
    assert host_ops(N.PowerToMultiply()(mod)) == ["relax.power"]


# ------------------------------------------------------------------ take of a progression

def _take_module(shape, indices, axis):
    x = relax.Var("x", relax.TensorType(list(shape), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.relu(x))
            y = bb.emit(relax.op.take(y, relax.const(np.asarray(indices, dtype="int64")), axis=axis))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("shape,indices,axis", [
    ((2, 7, 3), np.arange(7).reshape(1, 7, 1, 1), 1),      # ConvNeXt's as_strided: a reshape
    ((2, 7, 3), [1, 3, 5], 1),
    ((2, 7, 3), [[6], [5], [4]], 1),                        # descending
    ((5, 3), [4, 3, 2, 1, 0], 0),                           # descending to the first element
    ((12,), np.arange(2, 12, 3).reshape(2, 2), None),      # no axis: 1-D data
], ids=["arange", "step2", "descending", "reversed", "no-axis"])
def test_take_of_a_progression_becomes_a_slice_the_chip_runs(shape, indices, axis):
    import tvm_sophon

    mod = _take_module(shape, indices, axis)
    new = N.TakeProgressionToSlice()(mod)
    assert "relax.take" not in host_ops(new)
    x = RNG.standard_normal(shape).astype("float32")
    expected = _llvm(mod, x)
    # data movement and ReLU: bit for bit
    np.testing.assert_array_equal(_llvm(new, x), expected)
    partitioned = tvm_sophon.partition_for_sophon(new)
    assert host_ops(partitioned) == []
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)


@pytest.mark.parametrize("indices", [[0, 2, 1], [3, 3], [1, 9]], ids=["permutation", "repeat", "out-of-range"])
def test_take_of_other_indices_stays(indices):
    mod = _take_module((2, 7, 3), indices, 1)
    assert "relax.take" in host_ops(N.TakeProgressionToSlice()(mod))


# ------------------------------------------------------------------ output aliases

def _aliased_output(build):
    """``main`` whose output binding is an alias, ``gv = lv``, of the op's own binding
    (what a BlockBuilder makes of ``emit_output(emit(op))``): TVM's pattern matcher
    also matches the alias through its binding."""
    x = relax.Var("x", relax.TensorType((1, 4, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(build(bb, x)))
        bb.emit_func_output(out)
    return bb.get()


ALIASED = {
    "concat": lambda bb, x: relax.op.concat([bb.emit(relax.op.nn.relu(x)), x], axis=1),
    "wide_concat": lambda bb, x: relax.op.concat([x] * 40, axis=1),
    "split": lambda bb, x: relax.TupleGetItem(bb.emit(relax.op.split(x, 2, axis=1)), 1),
    "constant_first": lambda bb, x: relax.op.add(relax.const(np.float32(0.5)), x),
    "min_max": lambda bb, x: relax.op.minimum(bb.emit(relax.op.maximum(x, relax.const(np.float32(0.0)))),
                                              relax.const(np.float32(6.0))),
    "divide": lambda bb, x: relax.op.divide(x, relax.const(np.float32(4.0))),
    "power": lambda bb, x: relax.op.power(x, relax.const(np.float32(2.0))),
}


@pytest.mark.parametrize("name", sorted(ALIASED))
def test_rewrites_of_an_aliased_output(name):
    """Each normalisation pass leaves the alias and rewrites the op's own binding,
    and partitioning the module computes what TVM's llvm build of it does (the
    concat case used to crash: a rewriter was handed the alias variable)."""
    from conftest import run_llvm, run_sophon

    mod = _aliased_output(ALIASED[name])
    passes = [N.TirMinMaxToRelax(), N.MinMaxToClip(), N.ConstantOperandLast(), N.FoldBatchNorm(),
              N.RemoveIdentities(), N.TakeProgressionToSlice(), N.StackReduceToBinary(), N.MergeClips(),
              N.RemoveScaleByOne(), N.DivideByConstant(), N.PowerToMultiply(), *N.movement_passes()]
    for p in passes:
        relax.analysis.well_formed(p(mod))  # raises on an ill-formed module
    x = RNG.standard_normal((1, 4, 6, 6)).astype("float32")
    # exact: moves, relu and clip copy or compare values; 0.5 + x rounds once either way
    np.testing.assert_array_equal(run_sophon(mod, None, {"x": x}).output, run_llvm(mod, None, {"x": x}))
