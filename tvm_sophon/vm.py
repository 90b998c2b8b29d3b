"""One relax.VirtualMachine per Python thread.

A relax.VirtualMachine keeps per-call state (registers, the current frame) and is
not safe to call from several Python threads at once: TVM's VM crashes, with or
without tvm_sophon. Separate VMs over the same executable or library are safe
(the emulated chip of a library runs one region at a time under its lock).
:class:`ThreadLocalVM` gives each calling thread its own VM, created on first use.
"""
from __future__ import annotations

import threading

import tvm
from tvm import relax


class ThreadLocalVM:
    """``vm = ThreadLocalVM(ex); vm["main"](x)`` from any number of threads."""

    def __init__(self, executable, device=None):
        self._executable = executable
        self._device = device if device is not None else tvm.cpu()
        self._local = threading.local()

    @property
    def vm(self) -> relax.VirtualMachine:
        """This thread's VirtualMachine."""
        vm = getattr(self._local, "vm", None)
        if vm is None:
            vm = self._local.vm = relax.VirtualMachine(self._executable, self._device)
        return vm

    @property
    def module(self):
        return self.vm.module

    def __getitem__(self, name: str):
        """A function that runs ``name`` on the calling thread's VM (resolved at
        each call, so it may be handed to other threads)."""
        return lambda *args: self.vm[name](*args)
