"""Pre-quantized TFLite models on the chip: every int8 layer kind bit-exact with
the TFLite interpreter (the reference for int8: TVM's own lowering truncates
average pools, TFLite rounds)."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
tflite = pytest.importorskip("tflite")

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402
from zoo_int8_models import run_tflite  # noqa: E402

from frontend_models import int8_tflite  # noqa: E402


def _keras(build, inputs):
    layers = tf.keras.layers
    ins = [tf.keras.Input(shape, batch_size=1) for shape in inputs]
    return tf.keras.Model(ins, build(layers, *ins))


MODELS = {
    "conv_relu": ([(9, 9, 3)], lambda L, x: L.Conv2D(8, 3, padding="same", activation="relu")(x)),
    "conv_stride2_valid": ([(11, 10, 5)], lambda L, x: L.Conv2D(17, 3, strides=2)(x)),
    "depthwise_relu6": ([(8, 8, 16)], lambda L, x: L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)),
    "depthwise_multiplier2": ([(7, 7, 3)], lambda L, x: L.DepthwiseConv2D(3, depth_multiplier=2)(x)),
    "dense": ([(40,)], lambda L, x: L.Dense(10)(x)),
    "dense_relu": ([(70,)], lambda L, x: L.Dense(65, activation="relu")(x)),
    "add": ([(6, 6, 8), (6, 6, 8)], lambda L, a, b: L.Add()([a, b])),
    "max_pool": ([(8, 9, 4)], lambda L, x: L.MaxPooling2D(2)(x)),
    "avg_pool": ([(8, 8, 4)], lambda L, x: L.AveragePooling2D(2)(x)),
    "avg_pool_same": ([(7, 7, 3)], lambda L, x: L.AveragePooling2D(3, strides=2, padding="same")(x)),
}


def _convert(name, seed=0) -> bytes:
    shapes, build = MODELS[name]
    tf.keras.utils.set_random_seed(seed)  # Keras's initial weights: the same model every run
    model = _keras(build, shapes)
    rng = np.random.default_rng(1)

    def representative():
        for _ in range(32):
            yield [rng.standard_normal((1, *s)).astype("float32") * 2 for s in shapes]

    return int8_tflite(model, representative)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    paths = {}
    for name in MODELS:
        paths[name] = root / f"{name}.tflite"
        paths[name].write_bytes(_convert(name))
    return paths


def _tflite_run(buf, inputs, resolver="BUILTIN_REF"):
    """The TFLite interpreter's first output; by default with its reference
    kernels, the specification of TFLite's integer arithmetic. (Its optimized
    conv kernels, through ruy, round requantization ties differently: up to 1
    LSB apart.)"""
    return run_tflite(buf, inputs, resolver)[0]


def _assert_bit_exact(path, runs=4):
    mod = load(path)
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert report.offloaded and all(c.startswith("sophon.q") for c in report.offloaded), report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    rng = np.random.default_rng(7)
    params = mod["main"].params
    for _ in range(runs):
        xs = [rng.integers(-128, 128, size=[int(d) for d in p.ty.shape.values], dtype=np.int8) for p in params]
        expected = _tflite_run(path.read_bytes(), xs)
        out = vm["main"](*map(tvm.runtime.tensor, xs)).numpy()
        np.testing.assert_array_equal(out, expected)  # exact: same integer arithmetic


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_layer_bit_exact_with_tflite(models, name):
    _assert_bit_exact(models[name])


# TFLite rounds per op: its reference FULLY_CONNECTED rounds acc * scale once in
# double, CONV_2D and DEPTHWISE_CONV_2D twice in fixed point; the two disagree on
# about 1 output in 1000, so one weight draw and 4 inputs rarely tell them apart.
# Several weight seeds x 40 inputs do (about 2600 outputs per dense seed: the
# fixed-point rounding missed 1-2 of them for seeds 4, 5 and 6 of dense_relu).
@pytest.mark.parametrize("name,seed", [("dense_relu", 4), ("dense_relu", 5), ("dense_relu", 6),
                                       ("conv_relu", 1), ("depthwise_multiplier2", 1)])
def test_int8_weight_seeds_bit_exact_with_tflite(tmp_path, name, seed):
    path = tmp_path / f"{name}_{seed}.tflite"
    path.write_bytes(_convert(name, seed))
    _assert_bit_exact(path, runs=40)


def test_int8_model_on_bm1680_names_bm1684(models):
    mod = load(models["conv_relu"])
    with pytest.raises(tvm_sophon.SophonCompileError, match="bm1684"):
        tvm_sophon.partition_for_sophon(mod, chip="bm1680")


def _twin_branches(L, x):
    """Two branches of one shape, conv + BatchNorm + ReLU each, whose output scales
    differ (the second branch's weights are 4x): their regions are structurally
    equal and TFLite names both after the model, so before issue #11 they were
    one region function compiled with the first branch's scales."""
    def branch(scale):
        conv = L.Conv2D(6, 3, padding="same", use_bias=False,
                        kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.3 * scale))
        return L.ReLU()(L.BatchNormalization()(conv(x)))

    return [branch(1.0), branch(4.0)]


def test_identical_int8_layers_keep_their_own_scales(tmp_path):
    tf.keras.utils.set_random_seed(5)
    model = _keras(_twin_branches, [(7, 7, 4)])
    rng = np.random.default_rng(5)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.standard_normal((1, 7, 7, 4)).astype("float32")]
                                                for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    buf = converter.convert()
    path = tmp_path / "twins.tflite"
    path.write_bytes(buf)
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    scales = {d["quantization"][0] for d in tf.lite.Interpreter(model_content=buf).get_output_details()}
    assert len(scales) == 2, scales  # the premise: the two outputs are quantized differently
    for _ in range(3):
        x = rng.integers(-128, 128, size=(1, 7, 7, 4), dtype=np.int8)
        expected = run_tflite(buf, [x])
        out = [o.numpy() for o in vm["main"](tvm.runtime.tensor(x))]
        np.testing.assert_array_equal(out, expected)  # exact: same integer arithmetic


# Quantized ops TVM's TFLite importer refuses and tvm_sophon.frontend imports:
# data movement on the int8 values (TFLite's kernels copy them), GELU as
# dequantize -> gelu -> quantize. Name -> (input shapes, Keras builder).
REFUSED_BY_TVM = {
    "pad": ([(5, 6, 3)], lambda L, x: L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(((1, 2), (2, 0)))(x))),
    "strided_slice": ([(7, 8, 5)], lambda L, x: L.Conv2D(4, 1)(x[:, 1:6:2, ::3, 1:4])),
    "tile": ([(3, 4, 5)], lambda L, x: L.Conv2D(3, 1)(tf.keras.ops.tile(x, [1, 2, 1, 3]))),
    "transpose": ([(3, 4, 6)], lambda L, x: L.Conv2D(3, 1)(tf.keras.ops.transpose(x, [0, 2, 1, 3]))),
    "gelu": ([(4, 5, 6)], lambda L, x: L.Activation("gelu")(L.Conv2D(6, 1)(x))),
    "gelu_approximate": ([(4, 5, 6)], lambda L, x: tf.keras.ops.gelu(L.Conv2D(6, 1)(x), approximate=True)),
}
# BUILTIN_REF registers TILE only up to version 2 (the converter writes version 3
# for int8): the default kernel, a copy of the int8 values, is the reference there
RESOLVER = {"tile": "AUTO"}


@pytest.mark.parametrize("name", list(REFUSED_BY_TVM))
def test_quantized_op_tvm_refuses_imports_and_runs(tmp_path, name):
    """The import runs on TVM's llvm build within 1 LSB of TFLite's reference
    kernels (it emulates GELU in float; TFLite looks it up in a table computed in
    float: a value near a rounding tie may land 1 LSB apart), and the chip is
    bit-exact with them."""
    shapes, build = REFUSED_BY_TVM[name]
    MODELS[name] = (shapes, build)
    try:
        buf = _convert(name)
    finally:
        del MODELS[name]
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(buf)
    mod = load(path)
    llvm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    chip = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.integers(-128, 128, size=[int(d) for d in mod["main"].params[0].ty.shape.values], dtype=np.int8)
        expected = _tflite_run(buf, [x], RESOLVER.get(name, "BUILTIN_REF")).astype(int)
        assert np.abs(llvm["main"](tvm.runtime.tensor(x)).numpy().astype(int) - expected).max() <= 1
        np.testing.assert_array_equal(chip["main"](tvm.runtime.tensor(x)).numpy(), expected)


def _resnet_stem_and_block(L, x):
    """ResNet's stem and a bottleneck: explicit zero pads before the 7x7 conv and
    the max pool (quantized PAD), one pooled tensor read by two convs (the
    shortcut and the block), and the residual ADD with its fused ReLU."""
    x = L.ReLU()(L.Conv2D(8, 7, strides=2)(L.ZeroPadding2D(3)(x)))
    x = L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(1)(x))
    shortcut = L.Conv2D(16, 1)(x)
    y = L.Conv2D(16, 1)(L.Conv2D(4, 3, padding="same", activation="relu")(L.Conv2D(4, 1, activation="relu")(x)))
    return L.ReLU()(L.Add()([shortcut, y]))


def test_int8_resnet_block_is_one_region(tmp_path):
    """Every op of the block runs on the chip, in one region: the pads are
    folded into the conv or moved as int8, each layer gets its own dequantize
    of the shared input, and the ADD's ReLU clamps the int8 result."""
    MODELS["resnet_block"] = ([(21, 19, 3)], _resnet_stem_and_block)
    try:
        buf = _convert("resnet_block")
    finally:
        del MODELS["resnet_block"]
    path = tmp_path / "resnet_block.tflite"
    path.write_bytes(buf)
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    rng = np.random.default_rng(9)
    for _ in range(3):
        x = rng.integers(-128, 128, size=(1, 21, 19, 3), dtype=np.int8)
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), _tflite_run(buf, [x]))
