"""The model's own names for Relax ops.

TVM's importers name every binding ``lv``, ``lv17``, ``gv``: nothing of the
model's node or tensor names survives. The frontends (``frontend.py``) write the
name of the model node each op came from into the op's span (its source name):
the TFLite output tensor name, the ONNX node name, the torch module path. Spans
travel with the calls through pattern fusion and region merging, so layers,
profiles, plots, ``compare`` and errors can say ``conv1`` instead of ``lv17``.
"""
from __future__ import annotations

from typing import Optional

import tvm
from tvm import relax


def span_of(name: str) -> tvm.ir.Span:
    return tvm.ir.Span(tvm.ir.SourceName(name), 0, 0, 0, 0)


def model_name(expr) -> Optional[str]:
    """The model's name for a call (from its span), or None."""
    span = getattr(expr, "span", None)
    # names.py's spans have no line; TVMScript's point into a source file (line >= 1)
    if span is None or span.line != 0:
        return None
    name = str(span.source_name.name)
    return name or None


def label(var, value=None) -> str:
    """What to call a binding in reports: the model's name of its value, else the var's."""
    return (model_name(value) if value is not None else None) or var.name


def emit_named(bb, expr, name: str, name_hint: str = "", *, bind: bool = True):
    """Emit ``expr`` into ``bb`` call by call, innermost first, each op call that has
    no name yet carrying ``name`` as its span; returns the expression's variable
    (or ``expr`` itself if it is no op call). With ``bind=False`` the outermost call
    stays unbound (normalised), as ``BlockBuilder.normalize`` leaves it. Nested
    calls are bound one by one because the builder's normaliser drops the span of
    a call whose arguments it has to bind."""
    span = span_of(name) if name else None
    emit_leaf = bind and not isinstance(expr, (relax.Var, tvm.ir.expr.Constant))

    def rebuild(e, outer: bool):
        if isinstance(e, relax.Tuple) and any(isinstance(f, (relax.Call, relax.Tuple)) for f in e.fields):
            e = relax.Tuple([rebuild(f, False) for f in e.fields])
        if not (isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)):
            return bb.emit(e, name_hint) if outer and emit_leaf else e
        own = e.span if model_name(e) else span
        call = relax.Call(e.op, [rebuild(a, False) for a in e.args], e.attrs, e.ty_args, span=own)
        if outer and not bind:
            return bb.normalize(call)
        return bb.emit(call, name_hint if outer else "")

    return rebuild(expr, True)


def tag_call(call: relax.Call, name: str) -> relax.Call:
    """One op call with ``name`` as its span (for models built in code)."""
    return relax.Call(call.op, call.args, call.attrs, call.ty_args, span=span_of(name))


class NamingBuilder:
    """A BlockBuilder stand-in for one node's conversion: what the converter emits
    carries the node's name; everything else goes to the real builder."""

    def __init__(self, bb: relax.BlockBuilder, name: str, fold=None):
        self._bb = bb
        self._name = name
        self._fold = fold  # expr -> constant or None: computed from constants, not emitted

    def emit(self, expr, name_hint: str = ""):
        folded = self._fold(expr) if self._fold else None
        return folded if folded is not None else emit_named(self._bb, expr, self._name, name_hint)

    def normalize(self, expr):
        folded = self._fold(expr) if self._fold else None
        return folded if folded is not None else emit_named(self._bb, expr, self._name, bind=False)

    def __getattr__(self, attr):
        return getattr(self._bb, attr)
