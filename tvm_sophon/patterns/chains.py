"""Activations as the op chains the importers emit, and the chip activation each
one becomes.

An importer seldom emits an activation as one op: TVM's TFLite frontend writes
hard-swish as ``x * clip(x + 3, 0, 6) / 6``, its ONNX frontend writes ``Elu`` as
``relu(1 - exp(x)) * -alpha + relu(x)``, torch.export writes ``nn.Mish`` with a
``where`` for the softplus threshold. Each :class:`Chain` lists the spellings
seen in TVM 0.27's importers (checked by importing tiny models, see
tests/test_activations.py) as one dataflow pattern over its input ``x``, and
turns the chain's constants into the parameters of one chip activation
(``sophon_act_kind``), or into the reason the chip cannot take them.

The constants are read through a ``lookup`` so that one function serves both
the pattern check (the constants are relax constants there) and the codegen
(a region receives them as arguments, recorded in ``sophon.const_args``).

This module only builds patterns; it depends on nothing else in the package, so
the pattern rules (``rules.py``) and the codegen can both import it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import numpy as np
from tvm import relax
from tvm.ir.expr import Constant
from tvm.ir.prim.expr import FloatImm, IntImm
from tvm.relax.dpl import DFPattern, is_op, wildcard

Named = dict[str, DFPattern]
Params = Union[dict, str]        # Activation fields, or why the constants do not fit
Lookup = Callable[[relax.Expr], Optional[np.ndarray]]

# float32 constants as the importers write them: float32(1/6) after division by
# 6 became a multiplication (normalize.DivideByConstant), float32(1/sqrt(2))
F32_SIXTH = float(np.float32(1.0 / 6.0))
F32_SQRT1_2 = float(np.float32(0.5 ** 0.5))
F32_SQRT2 = float(np.float32(2.0 ** 0.5))


@dataclasses.dataclass(frozen=True)
class Chain:
    name: str                                     # pattern suffix: sophon.conv2d_bias_<name>
    kind: str                                     # sophon_act_kind without SOPHON_ACT_
    build: Callable[[DFPattern], tuple[DFPattern, Named]]
    params: Callable[[dict], Params] = lambda values: {}

    def pattern(self, x: DFPattern) -> tuple[DFPattern, Named]:
        """(pattern of the chain applied to ``x``, its named sub-patterns); the
        names are prefixed with ``act.`` so they never clash with a family's keys."""
        out, named = self.build(x)
        return out, {f"act.{k}": v for k, v in named.items()}


# ------------------------------------------------------------------ constants

def scalar(expr, lookup: Optional[Lookup] = None) -> Optional[float]:
    """The value of a scalar operand (a relax constant, a prim value, or a
    region argument ``lookup`` knows), else None."""
    value = None
    if isinstance(expr, (IntImm, FloatImm)):
        return float(expr.value)
    if isinstance(expr, Constant):
        value = expr.value.numpy() if hasattr(expr.value, "numpy") else None
    elif lookup is not None:
        value = lookup(expr)
    if value is None or np.asarray(value).size != 1:
        return None
    return float(np.asarray(value).reshape(()))


def chain_values(matched: dict, lookup: Optional[Lookup] = None) -> dict:
    """Scalar values of a matched chain's ``act.c_*`` constants and ``act.clip*``
    bounds (``act.clip`` as ``clip_lo``/``clip_hi``); None for an operand that is not a scalar
    constant. Keys without the ``act.`` prefix."""
    values: dict = {}
    for key, expr in matched.items():
        if not key.startswith("act."):
            continue
        name = key[4:]
        if name.startswith("c_"):
            values[name] = scalar(expr, lookup)
        elif name.startswith("clip"):
            values[f"{name}_lo"] = scalar(expr.args[1], lookup)
            values[f"{name}_hi"] = scalar(expr.args[2], lookup)
        elif name == "softplus":
            values["softplus_beta"] = float(expr.attrs.beta)
    return values


def _close(value: Optional[float], want: float, rtol: float = 0.0) -> bool:
    """``value`` is ``want`` (float32 constants compared exactly unless ``rtol``)."""
    return value is not None and abs(value - want) <= rtol * abs(want)


def _is(values: dict, **want: float) -> bool:
    return all(_close(values.get(k), v) for k, v in want.items())


# ------------------------------------------------------------------ small builders

def _commuted(op: str, a: DFPattern, b: DFPattern) -> DFPattern:
    return is_op(op)(a, b) | is_op(op)(b, a)


def _scaled_by_inverse(p: DFPattern, named: Named, name: str) -> DFPattern:
    """``p / c`` or ``p * c'``: a division by a constant, before or after
    normalize rewrote it as a multiplication by the reciprocal."""
    named[f"c_div_{name}"] = c_div = wildcard()
    named[f"c_mul_{name}"] = c_mul = wildcard()
    return is_op("relax.divide")(p, c_div) | is_op("relax.multiply")(p, c_mul)


def _divisor(values: dict, name: str) -> Optional[float]:
    """The divisor of a ``_scaled_by_inverse`` match: c, or 1/c' rounded to the
    nearest float32 (so 0.16666667 reads as 6)."""
    if values.get(f"c_div_{name}") is not None:
        return values[f"c_div_{name}"]
    mul = values.get(f"c_mul_{name}")
    if mul is None or mul == 0.0:
        return None
    return float(np.float32(1.0 / mul))


def _relu6_of_x_plus_3(x: DFPattern, named: Named) -> DFPattern:
    named["c_add"] = c_add = wildcard()
    named["clip"] = clip = is_op("relax.clip")(is_op("relax.add")(x, c_add), wildcard(), wildcard())
    return clip


def _relu6_ok(values: dict) -> bool:
    return _is(values, c_add=3.0, clip_lo=0.0, clip_hi=6.0)


def _softplus(x: DFPattern, named: Named) -> DFPattern:
    """softplus(x) as the importers spell it:
    log(exp(x) + 1)                                       TFLite (Keras)
    where(x > 20, x, log(exp(x) + 1))                     torch.export (beta 1)
    max(x, 0) + log(exp(-|x|) + 1)                        ONNX
    nn.softplus(x)                                        Relax's own op"""
    named["c_one"] = c_one = wildcard()
    naive = is_op("relax.log")(is_op("relax.add")(is_op("relax.exp")(x), c_one))
    named["c_threshold"] = c_threshold = wildcard()
    thresholded = is_op("relax.where")(is_op("relax.greater")(x, c_threshold), x, naive)
    named["c_zero"] = c_zero = wildcard()
    stable = _commuted("relax.add", is_op("relax.maximum")(x, c_zero),
                       is_op("relax.log")(is_op("relax.add")(
                           is_op("relax.exp")(is_op("relax.negative")(is_op("relax.abs")(x))), c_one)))
    named["softplus"] = op = is_op("relax.nn.softplus")(x)
    return thresholded | naive | stable | op


def _softplus_params(values: dict) -> Params:
    if values.get("softplus_beta", 1.0) != 1.0:
        return f"softplus with beta {values['softplus_beta']} (the chip's softplus has beta 1)"
    if "c_one" in values and not _is(values, c_one=1.0):
        return "softplus chain does not add 1"
    if "c_zero" in values and not _is(values, c_zero=0.0):
        return "softplus chain's maximum is not with 0"
    # above the threshold log(1 + exp(x)) == x in float32 once exp(-x) < 2^-24,
    # i.e. for x > 16.7: any threshold from 17 on gives the same float32 result
    if "c_threshold" in values and (values["c_threshold"] is None or values["c_threshold"] < 17.0):
        return f"softplus threshold {values['c_threshold']} (the chip's softplus is exact above 17)"
    return {}


# ------------------------------------------------------------------ the chains

def _silu(x):
    s = is_op("relax.sigmoid")(x)
    return is_op("relax.nn.silu")(x) | _commuted("relax.multiply", x, s), {}


def _hard_swish(x):
    """x * clip(x + 3, 0, 6) / 6 (TFLite, torch), x * (clip(x + 3, 0, 6) / 6) (ONNX)."""
    named: Named = {}
    relu6 = _relu6_of_x_plus_3(x, named)
    outer = _scaled_by_inverse(_commuted("relax.multiply", x, relu6), named, "outer")
    inner = _commuted("relax.multiply", x, _scaled_by_inverse(relu6, named, "inner"))
    return outer | inner, named


def _hard_swish_params(values: dict) -> Params:
    divisor = _divisor(values, "outer") if "c_div_outer" in values or "c_mul_outer" in values \
        else _divisor(values, "inner")
    if not (_relu6_ok(values) and _close(divisor, 6.0)):
        return "not hard-swish: constants are not x * clip(x + 3, 0, 6) / 6"
    return {}


def _hard_sigmoid(x):
    """clip(x + 3, 0, 6) / 6 (torch), clip(alpha * x + beta, 0, 1) (ONNX)."""
    named: Named = {}
    torch_form = _scaled_by_inverse(_relu6_of_x_plus_3(x, named), named, "outer")
    named["c_alpha"] = c_alpha = wildcard()
    named["c_beta"] = c_beta = wildcard()
    named["clip01"] = clip = is_op("relax.clip")(
        is_op("relax.add")(_commuted("relax.multiply", x, c_alpha), c_beta), wildcard(), wildcard())
    return torch_form | clip, named


def _hard_sigmoid_params(values: dict) -> Params:
    if "c_alpha" in values:
        if not _is(values, clip01_lo=0.0, clip01_hi=1.0) or values["c_alpha"] is None or values["c_beta"] is None:
            return "not hard-sigmoid: clip(alpha * x + beta, 0, 1) needs constant alpha, beta and bounds 0, 1"
        return {"alpha": values["c_alpha"], "beta": values["c_beta"]}
    if not (_relu6_ok(values) and _close(_divisor(values, "outer"), 6.0)):
        return "not hard-sigmoid: constants are not clip(x + 3, 0, 6) / 6"
    return {"alpha": F32_SIXTH, "beta": 0.5}


def _gelu(x):
    """nn.gelu(x); x * (0.5 + erf(x * 0.7071) * 0.5) (TFLite); x * (erf(x / 1.4142) + 1) * 0.5
    (torch.onnx's exporter; the division is a multiplication after normalize)."""
    named: Named = {}
    named["c_sqrt1_2"] = c_sqrt1_2 = wildcard()
    named["c_half"] = c_half = wildcard()
    named["c_half2"] = c_half2 = wildcard()
    tflite = _commuted("relax.multiply", x, is_op("relax.add")(
        is_op("relax.multiply")(is_op("relax.erf")(is_op("relax.multiply")(x, c_sqrt1_2)), c_half), c_half2))
    named["c_one"] = c_one = wildcard()
    erf = is_op("relax.erf")(_scaled_by_inverse(x, named, "sqrt2"))
    onnx = is_op("relax.multiply")(_commuted("relax.multiply", x, is_op("relax.add")(erf, c_one)), c_half)
    return is_op("relax.nn.gelu")(x) | tflite | onnx, named


def _gelu_params(values: dict) -> Params:
    if "c_sqrt1_2" in values:
        ok = _close(values["c_sqrt1_2"], F32_SQRT1_2, 1e-6) and _is(values, c_half=0.5, c_half2=0.5)
    elif "c_one" in values:
        ok = _close(_divisor(values, "sqrt2"), F32_SQRT2, 1e-6) and _is(values, c_one=1.0, c_half=0.5)
    else:
        ok = True
    return {} if ok else "not GELU: constants are not x * (1 + erf(x / sqrt(2))) / 2"


def _gelu_tanh(x):
    return is_op("relax.nn.gelu_tanh")(x), {}


def _mish(x):
    """x * tanh(softplus(x)), softplus in any of its spellings."""
    named: Named = {}
    t = is_op("relax.tanh")(_softplus(x, named))
    return _commuted("relax.multiply", x, t), named


def _softplus_chain(x):
    named: Named = {}
    return _softplus(x, named), named


def _elu(x):
    """relu(1 - exp(x)) * -alpha + relu(x) (ONNX, torch.export, TFLite)."""
    named: Named = {}
    named["c_one"] = c_one = wildcard()
    named["c_neg_alpha"] = c_neg_alpha = wildcard()
    negative_part = is_op("relax.multiply")(
        is_op("relax.nn.relu")(is_op("relax.subtract")(c_one, is_op("relax.exp")(x))), c_neg_alpha)
    return _commuted("relax.add", negative_part, is_op("relax.nn.relu")(x)), named


def _elu_params(values: dict) -> Params:
    if not _is(values, c_one=1.0) or values.get("c_neg_alpha") is None:
        return "not ELU: constants are not relu(1 - exp(x)) * -alpha + relu(x)"
    # for x > 0, 1 - exp(x) < 0 and the first term is 0 whatever alpha's sign
    return {"alpha": -values["c_neg_alpha"]}


def _unary(op_name: str):
    return lambda x: (is_op(op_name)(x), {})


def _reciprocal(x):
    named: Named = {"c_one": wildcard()}
    return is_op("relax.divide")(named["c_one"], x), named


def _reciprocal_params(values: dict) -> Params:
    return {} if _is(values, c_one=1.0) else "divide of a constant other than 1 by a tensor"


# Fused after conv2d / fc / element-wise ops, and standalone. The order matters
# where one chain contains another: hard-swish contains hard-sigmoid and mish
# contains softplus, so the containing chain is registered (and wins) later.
CHAINS = {c.name: c for c in (
    Chain("hardsigmoid", "HARD_SIGMOID", _hard_sigmoid, _hard_sigmoid_params),
    Chain("hardswish", "HARD_SWISH", _hard_swish, _hard_swish_params),
    Chain("silu", "SILU", _silu),
    Chain("gelu", "GELU", _gelu, _gelu_params),
    Chain("gelu_tanh", "GELU_TANH", _gelu_tanh),
    Chain("softplus", "SOFTPLUS", _softplus_chain, _softplus_params),
    Chain("mish", "MISH", _mish, _softplus_params),
    Chain("elu", "ELU", _elu, _elu_params),
)}

# Standalone only: element-wise math on the chip's special-function unit.
MATH = {c.name: c for c in (
    Chain("sqrt", "SQRT", _unary("relax.sqrt")),
    Chain("rsqrt", "RSQRT", _unary("relax.rsqrt")),
    Chain("exp", "EXP", _unary("relax.exp")),
    Chain("log", "LOG", _unary("relax.log")),
    Chain("abs", "ABS", _unary("relax.abs")),
    Chain("negative", "NEG", _unary("relax.negative")),
    Chain("erf", "ERF", _unary("relax.erf")),
    Chain("reciprocal", "RECIPROCAL", _reciprocal, _reciprocal_params),
)}

# registration order: single ops first, so that a chain containing one wins
ALL = {**MATH, **CHAINS}


def chain_of(pattern_name: str) -> Optional[Chain]:
    """The chain a composite's pattern name ends with (``sophon.conv2d_bias_mish``
    -> mish), else None. Longest suffix first: ``gelu_tanh`` before ``gelu``."""
    for name in sorted(ALL, key=len, reverse=True):
        if pattern_name == f"sophon.{name}" or pattern_name.endswith(f"_{name}"):
            return ALL[name]
    return None


def activation_params(chain: Chain, matched: dict, lookup: Optional[Lookup] = None) -> Params:
    """The chip activation's fields (``kind`` and its parameters) for a matched
    chain, or the reason its constants do not make that activation."""
    values = chain_values(matched, lookup)
    params = chain.params(values)
    if isinstance(params, str):
        return params
    return {"kind": chain.kind, **params}
