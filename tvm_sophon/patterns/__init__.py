"""The sophon pattern table: which Relax subgraphs run on the chip.

One module per op family (movement, conv, deconv, dense, pool, reduce, resize, norm, lrn,
eltwise, activations, int8, int8_movement), each with its
rules, its pattern builders and a ``patterns()`` list; ``rules`` holds what they
share. A new family is a module with ``patterns()`` added to ``FAMILIES``.

Every pattern is ``sophon.<ops>`` with fixed annotation keys that the checks,
the planner and the codegen all read:

    input   the activation entering the root op
    weight  conv / dense weight (for dense, the tensor *before* permute_dims)
    bias    the bias tensor (before an optional reshape)
    lhs/rhs operands of an element-wise binary op
    root    the op that names the pattern (conv2d, matmul, pool, add, ...)

Checks are pure predicates made of rules; each rule returns ``None`` (fine) or a
one-line hardware reason. The reasons of rejected matches are collected by the
partitioner so the offload report can say why an op stayed on the host.
Patterns registered later win, so plain ops come first and the most fused last.
"""
from __future__ import annotations

from tvm.relax.backend.pattern_registry import get_patterns_with_prefix, register_patterns
from tvm.relax.transform import FusionPattern

from . import (activations, conv, deconv, dense, eltwise, int8, int8_cast, int8_eltwise, int8_movement, int8_reduce,
               lrn, movement, norm, pool, reduce, resize)
from .rules import (constant_value, dtype_of, make_check, record_rejections, static_shape,  # noqa: F401
                    stop_recording)

# Registration order: data movement first (any bigger pattern that takes a reshape
# or transpose of its operand wins), plain ops, most fused last; int8 chains after every
# float pattern, since they are larger than any float pattern inside them. The lone
# float32 <-> int8 casts come first of all: every chain holding a cast wins over them.
FAMILIES = (int8_cast, movement, eltwise, activations, reduce, pool, resize, norm, dense, conv, deconv, lrn, int8, int8_eltwise,
            int8_movement, int8_reduce)


def pattern_table() -> list[FusionPattern]:
    """All sophon patterns, plain ops first, most fused last."""
    return [p for family in FAMILIES for p in family.patterns()]


# Registered as tuples: TVM 0.27's register_patterns schedules the exit-time
# cleanup only for tuple entries; FusionPattern objects with a Python check
# would be freed after the interpreter and crash it at exit.
register_patterns([(p.name, p.pattern, dict(p.annotation_patterns), p.check) for p in pattern_table()])


def sophon_patterns() -> list[FusionPattern]:
    """The registered sophon patterns, highest priority first (what FuseOpsByPattern takes)."""
    return list(get_patterns_with_prefix("sophon"))
