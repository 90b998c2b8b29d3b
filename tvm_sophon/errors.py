"""Errors the plugin raises for problems a user can cause.

They are registered with TVM's FFI so that an error raised inside a pass or the
codegen (called back from C++) reaches the caller with its own type.
"""
import tvm_ffi


@tvm_ffi.register_error
class SophonError(Exception):
    """Base class of every error tvm_sophon raises on purpose."""


@tvm_ffi.register_error
class SophonCompileError(SophonError):
    """A model cannot be compiled for the chip (the message says which tensor or op)."""


@tvm_ffi.register_error
class SophonToolchainError(SophonError):
    """The system C compiler failed on generated or runtime code."""
