"""
5. Writing a Relax pass for the chip, and asking the cost model about it
========================================================================

For compiler-pass researchers: this tutorial writes a small Relax rewrite,
plugs it into the sophon build, prints the IR before and after, and reads the
chip cost model's verdict, first as an estimate from the compiled chip programs,
then from the emulator's counters after a run.

The rewrite folds a per-channel scale that follows a convolution into the
convolution's weights (models with "layer scale", or a batch norm whose shift
was split off, have one):

    multiply(conv2d(x, W), s) -> conv2d(x, W * s)        s constant, one value per output channel

On the chip the unfused ``multiply`` is one more element-wise instruction over
the whole activation, plus loading ``s``.

Run it as a script: ``python tutorials/05_writing_a_pass.py``.
"""

# %%
# A model with scaled convolutions
# --------------------------------
# Written directly in TVMScript; the weights are parameters bound as constants.
import dataclasses

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.script import relax as R

import tvm_sophon
from tvm_sophon import codegen, cost


@tvm.script.ir_module
class ScaledConvNet:
    @R.function
    def main(x: R.Tensor((1, 8, 16, 16), "float32"),
             w1: R.Tensor((32, 8, 3, 3), "float32"), s1: R.Tensor((1, 32, 1, 1), "float32"),
             b1: R.Tensor((1, 32, 1, 1), "float32"),
             w2: R.Tensor((32, 32, 3, 3), "float32"), s2: R.Tensor((1, 32, 1, 1), "float32")):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            y = R.nn.conv2d(x, w1, padding=1)
            y = R.multiply(y, s1)
            y = R.nn.relu(R.add(y, b1))
            z = R.nn.conv2d(y, w2, padding=1)
            z = R.nn.relu(R.multiply(z, s2))
            out = R.nn.max_pool2d(z, pool_size=2, strides=2)
            R.output(out)
        return out


rng = np.random.default_rng(0)
params = {
    "w1": rng.standard_normal((32, 8, 3, 3)).astype("float32") * 0.2,
    "s1": rng.uniform(0.5, 1.5, (1, 32, 1, 1)).astype("float32"),
    "b1": rng.standard_normal((1, 32, 1, 1)).astype("float32") * 0.1,
    "w2": rng.standard_normal((32, 32, 3, 3)).astype("float32") * 0.1,
    "s2": rng.uniform(0.5, 1.5, (1, 32, 1, 1)).astype("float32"),
}
mod = relax.transform.BindParams("main", {k: tvm.runtime.tensor(v) for k, v in params.items()})(ScaledConvNet)

# %%
# The pass
# --------
# A pattern (``tvm.relax.dpl``) names what to match; the rewriter gets the
# matched call and the matched sub-expressions, and returns the replacement, or
# the call unchanged when a condition the pattern cannot express fails.
data, weight, scale = wildcard(), is_const(), is_const()
conv = is_op("relax.nn.conv2d")(data, weight)
scaled_conv = is_op("relax.multiply")(conv, scale)


def fold_scale(call, matches):
    conv_call = matches[conv]
    attrs = conv_call.attrs
    w = matches[weight].value.numpy()
    s = matches[scale].value.numpy()
    out_channels = w.shape[str(attrs.kernel_layout).index("O")]
    channel_axis = str(attrs.out_layout).index("C")
    if s.size != out_channels or s.shape[channel_axis] != out_channels:
        return call  # not one value per output channel: leave it alone
    kernel_shape = [1] * w.ndim
    kernel_shape[str(attrs.kernel_layout).index("O")] = out_channels
    new_w = relax.const(w * s.reshape(kernel_shape), "float32")
    return relax.op.nn.conv2d(matches[data], new_w, strides=attrs.strides, padding=attrs.padding,
                              dilation=attrs.dilation, groups=attrs.groups,
                              data_layout=attrs.data_layout, kernel_layout=attrs.kernel_layout,
                              out_layout=attrs.out_layout)


@tvm.transform.module_pass(opt_level=0, name="FoldScaleIntoConv")
def FoldScaleIntoConv(module, _ctx):  # noqa: N802 (TVM's pass naming)
    """multiply(conv2d(x, W), s) -> conv2d(x, W * s) for a constant per-channel s."""
    module = module.clone()
    module["main"] = rewrite_call(scaled_conv, fold_scale, module["main"])
    return module


# %%
# The IR before and after
# -----------------------
folded = FoldScaleIntoConv(mod)
print("---- before ----")
print(mod["main"].script(show_meta=False))
print("---- after ----")
print(folded["main"].script(show_meta=False))

# %%
# What the partitioner makes of each
# ----------------------------------
# Before: each ``multiply`` is its own element-wise composite. After: the
# convolutions absorb the scale and the bias/ReLU fuse into them.
before = tvm_sophon.partition_for_sophon(mod)
after = tvm_sophon.partition_for_sophon(folded)
print(tvm_sophon.offload_report(before).format())
print(tvm_sophon.offload_report(after).format())

# %%
# The cost model's verdict, before running anything
# -------------------------------------------------
# ``tvm_sophon.codegen.lower_functions`` turns the offloaded regions into the
# chip programs the build will emit; ``tvm_sophon.cost.estimate`` prices each
# with the runtime's own cost functions (runtime/chip/sophon_cost.h).
chip = tvm_sophon.get_chip("bm1680")


def estimate(partitioned):
    regions = [f for f in partitioned.functions.values()
               if isinstance(f, relax.Function) and (f.attrs or {}).get("Codegen") == "sophon"]
    total = cost.Estimate()
    for program in codegen.lower_functions(regions):
        e = cost.estimate(program)  # regions run one after the other: counters add up
        for field in dataclasses.fields(cost.Estimate):
            setattr(total, field.name, getattr(total, field.name) + getattr(e, field.name))
    return total


est_before, est_after = estimate(before), estimate(after)
for name, e in (("before", est_before), ("after", est_after)):
    print(f"{name:>6}: {e.tiu_instructions} TIU + {e.gdma_instructions} GDMA instructions, "
          f"{e.bytes_loaded} B loaded, {e.tiu_cycles} TIU + {e.gdma_cycles} GDMA cycles "
          f"(overlapped into {e.cycles} over {e.timesteps} timesteps), {e.seconds(chip) * 1e6:.2f} us")
print(f"estimated speed-up of the pass: {est_before.seconds(chip) / est_after.seconds(chip):.2f}x")

# %%
# Build with the pass in the pipeline, run, and read the counters
# ---------------------------------------------------------------
# ``tvm_sophon.pipeline()`` partitions a module that is not partitioned yet, so
# a pass placed before it in a ``Sequential`` runs on the whole model first.
pipeline = tvm.transform.Sequential([FoldScaleIntoConv, tvm_sophon.pipeline(chip=chip)])
x = rng.standard_normal((1, 8, 16, 16)).astype("float32")
results = {}
for name, build in (("before", lambda: tvm_sophon.build(before)),
                    ("after", lambda: tvm.compile(mod, target="llvm", relax_pipeline=pipeline))):
    vm = relax.VirtualMachine(build(), tvm.cpu())
    results[name] = vm["main"](tvm.runtime.tensor(x)).numpy()
    measured = tvm_sophon.last_run_stats(vm)["total"]
    print(f"{name:>6}: measured {measured['tiu_cycles']} TIU + {measured['gdma_cycles']} GDMA cycles, "
          f"{measured['seconds'] * 1e6:.2f} us on chip")

# Scaling the weights instead of the output reorders float32 roundings only.
max_error = float(np.max(np.abs(results["before"] - results["after"])))
print(f"max abs difference of the outputs: {max_error:.3g}")
share = tvm_sophon.offload_report(after).offloaded_mac_share
print(f"RESULT tutorial=5 offloaded_mac_share={share:.4f} estimated_speedup={est_before.seconds(chip) / est_after.seconds(chip):.3f} "
      f"max_abs_error={max_error:.3g}")
