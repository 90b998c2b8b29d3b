"""Accuracy of a compiled library over a labelled data set, sharded on Ray.

    tvm-sophon evaluate model_int8.so --data shards/ --reference model_fp32.so

The data set is a directory of shards, ``*.npz`` files each holding ``labels``
(integer class per sample) and the model's input(s) keyed by input name (a
single-input model also takes the one other array), samples along the first
axis. Every shard is one Ray task; the library (and the reference library) go
into Ray's object store once, as bytes, and each worker process loads them once
and keeps them for the next shard. A library built for batch B takes the
samples B at a time, the last batch padded with zeros (their outputs dropped).

Counts: top-1 and top-5 against the labels (a sample counts for top-k when its
label is among the k highest scores; equal scores, common in INT8 outputs, rank
by class index, as argmax ranks them); with a reference,
the same for the reference library and the agreement of the two: top-1 when
their arg-maxes are equal, top-5 when the reference's arg-max is among the
library's five highest scores. The library must carry the input signature that
``tvm-sophon compile`` writes into it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import SophonError

COUNTS = ("samples", "top1", "top5", "ref_top1", "ref_top5", "agree_top1", "agree_top5")


class EvaluateError(SophonError):
    """A library or data set cannot be evaluated (the message says which and why)."""


@dataclasses.dataclass
class Evaluation:
    library: str
    reference: Optional[str]
    shards: list[dict]          # per shard: its path and the counts of COUNTS

    def count(self, name: str) -> int:
        return sum(s[name] for s in self.shards)

    @property
    def samples(self) -> int:
        return self.count("samples")

    def rate(self, name: str) -> float:
        return self.count(name) / self.samples if self.samples else 0.0

    def to_dict(self) -> dict:
        return {"library": self.library, "reference": self.reference, "samples": self.samples,
                **{f"{name}_rate": self.rate(name) for name in COUNTS[1:]
                   if self.reference or not name.startswith(("ref", "agree"))},
                "shards": self.shards}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def format(self) -> str:
        lines = [f"{Path(self.library).name}: {self.samples} samples in {len(self.shards)} shards",
                 f"  top-1 {100 * self.rate('top1'):.2f}%   top-5 {100 * self.rate('top5'):.2f}%   (against the labels)"]
        if self.reference:
            lines += [f"{Path(self.reference).name} (reference): top-1 {100 * self.rate('ref_top1'):.2f}%   "
                      f"top-5 {100 * self.rate('ref_top5'):.2f}%",
                      f"agreement with the reference: top-1 {100 * self.rate('agree_top1'):.2f}%   "
                      f"top-5 {100 * self.rate('agree_top5'):.2f}%"]
        return "\n".join(lines)


# ------------------------------------------------------------------ in a worker

_LIBRARIES: dict = {}


def _library(blob: bytes, digest: str):
    """(VirtualMachine, signature) of a library's bytes, loaded once per process."""
    if digest not in _LIBRARIES:
        from .cli import _load_library

        path = Path(tempfile.gettempdir()) / f"tvm_sophon_eval_{os.getpid()}_{digest}.so"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        _LIBRARIES[digest] = _load_library(path)
    return _LIBRARIES[digest]


def _shard_inputs(data, signature: dict, shard: str) -> list[np.ndarray]:
    names = [i["name"] for i in signature["inputs"]]
    others = [k for k in data.files if k != "labels"]
    if len(names) == 1 and names[0] not in data.files and len(others) == 1:
        return [data[others[0]]]
    missing = [n for n in names if n not in data.files]
    if missing:
        raise EvaluateError(f"{shard}: no array for input '{missing[0]}' (it has: {', '.join(data.files)})")
    return [data[n] for n in names]


def _logits(vm, signature: dict, arrays: list[np.ndarray], shard: str) -> np.ndarray:
    """The first output over all samples, batch by batch as the library takes them."""
    import tvm

    specs = signature["inputs"]
    batch = specs[0]["shape"][0] if specs[0]["shape"] else 1
    count = len(arrays[0])
    for spec, array in zip(specs, arrays):
        if list(array.shape[1:]) != list(spec["shape"][1:]) or len(array) != count:
            raise EvaluateError(f"{shard}: input '{spec['name']}' has shape {list(array.shape)}; expected "
                                f"[{count}, {', '.join(map(str, spec['shape'][1:]))}] (samples first)")
    outs = []
    for start in range(0, count, batch):
        chunk = []
        for spec, array in zip(specs, arrays):
            part = array[start:start + batch].astype(spec["dtype"], copy=False)
            if len(part) < batch:
                part = np.concatenate([part, np.zeros((batch - len(part), *part.shape[1:]), part.dtype)])
            chunk.append(tvm.runtime.tensor(np.ascontiguousarray(part)))
        out = vm["main"](*chunk)
        out = out if hasattr(out, "numpy") else out[0]
        outs.append(out.numpy().reshape(batch, -1)[:min(batch, count - start)])
    return np.concatenate(outs)


def _within_top(logits: np.ndarray, classes: np.ndarray, k: int) -> np.ndarray:
    """Per sample: ``classes`` is among the k highest scores, equal scores ranked
    by class index (as argmax ranks them)."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (top == classes[:, None]).any(axis=1)


def evaluate_shard(shard: str, library: bytes, digest: str, reference: Optional[bytes],
                   reference_digest: Optional[str]) -> dict:
    """The counts of one shard (a Ray task; also callable directly)."""
    vm, signature = _library(library, digest)
    with np.load(shard) as data:
        if "labels" not in data.files:
            raise EvaluateError(f"{shard}: no 'labels' array (it has: {', '.join(data.files)})")
        labels = data["labels"].astype("int64").ravel()
        arrays = _shard_inputs(data, signature, shard)
    logits = _logits(vm, signature, arrays, shard)
    if len(labels) != len(logits):
        raise EvaluateError(f"{shard}: {len(labels)} labels for {len(logits)} samples")
    counts = {"shard": shard, "samples": len(labels),
              "top1": int(_within_top(logits, labels, 1).sum()), "top5": int(_within_top(logits, labels, 5).sum())}
    if reference is not None:
        ref_vm, ref_signature = _library(reference, reference_digest)
        ref = _logits(ref_vm, ref_signature, arrays, shard)
        ref_best = ref.argmax(axis=1)
        counts.update(ref_top1=int(_within_top(ref, labels, 1).sum()), ref_top5=int(_within_top(ref, labels, 5).sum()),
                      agree_top1=int((logits.argmax(axis=1) == ref_best).sum()),
                      agree_top5=int(_within_top(logits, ref_best, 5).sum()))
    else:
        counts.update({name: 0 for name in COUNTS if name.startswith(("ref", "agree"))})
    return counts


# ------------------------------------------------------------------ the driver


def _read_library(path) -> tuple[bytes, str]:
    """A library's bytes and digest, after checking in this process that it loads
    and has a signature (so a wrong file fails here, in one line)."""
    from .cli import CliError, _load_library

    try:
        _load_library(path)
    except CliError as err:
        raise EvaluateError(str(err)) from None
    blob = Path(path).read_bytes()
    return blob, hashlib.sha256(blob).hexdigest()[:16]


def evaluate(library: "str | os.PathLike", data: "str | os.PathLike", *,
             reference: "str | os.PathLike | None" = None, address: Optional[str] = None,
             num_cpus: Optional[int] = None, memory_per_shard: int = 1 << 30,
             runtime_env: Optional[dict] = None, progress: bool = True) -> Evaluation:
    """Evaluate ``library`` over the shards in ``data`` (see the module docstring).
    The shards are read by the workers: on a multi-node cluster ``data`` must be a
    path every node sees (a shared file system)."""
    from .sweep import _init_ray, require_ray

    ray = require_ray(local=not address)
    blob, digest = _read_library(library)
    ref_blob, ref_digest = _read_library(reference) if reference else (None, None)
    shards = sorted(str(p.resolve()) for p in Path(data).glob("*.npz")) if Path(data).is_dir() else []
    if not shards:
        raise EvaluateError(f"{data}: not a directory of .npz shards")
    _init_ray(ray, address, num_cpus, runtime_env)
    lib_ref, ref_ref = ray.put(blob), ray.put(ref_blob)
    task = ray.remote(evaluate_shard).options(num_cpus=1, memory=memory_per_shard, max_retries=0)
    pending = [task.remote(s, lib_ref, digest, ref_ref, ref_digest) for s in shards]
    from tqdm import tqdm

    results = {}
    with tqdm(total=len(shards), desc="evaluate", unit="shard", disable=not progress) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                row = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, SophonError):
                    raise EvaluateError(str(cause)) from None
                raise
            results[row["shard"]] = row
            bar.update(1)
    return Evaluation(str(library), str(reference) if reference else None, [results[s] for s in shards])
