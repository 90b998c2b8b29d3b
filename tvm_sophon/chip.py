"""The chip description: one JSON file per chip profile, read by the compiler and
emitted into generated C for the runtime (``sophon_chip``), so the two never hold
separate copies of the numbers."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .errors import SophonError
from .ctext import c_string

CHIPS_DIR = Path(__file__).resolve().parent / "chips"

DTYPE_BYTES = {"float32": 4, "int8": 1, "int32": 4}

# The runtime allocates npu_num x lmem_bytes_per_lane of host memory for the emulated
# LMEM; a profile asking for more than this is refused as absurd.
MAX_LMEM_BYTES = 1 << 34
# C int32 fields of sophon_chip
_INT32_MAX = (1 << 31) - 1


def _int_in(value, field: str, lo: int, hi: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SophonError(f"chip profile: {field} must be an integer in [{lo}, {hi}]{extra}, got {value!r}")


def _positive_finite(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SophonError(f"chip profile: {field} must be a positive finite number, got {value!r}")


def _text(value, field: str, lo: int, hi: int) -> None:
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise SophonError(f"chip profile: {field} must be a string of {lo} to {hi} characters, got {value!r:.80}")


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    npu_num: int
    lmem_bytes_per_lane: int
    lmem_banks: int
    eu_bytes: int
    has_int8: bool
    clock_hz: float
    ddr_bytes_per_second: float
    power_watts: float
    gdma_latency_cycles: int
    tiu_latency_cycles: int
    int8_macs_per_eu: int = 1
    # the measured-silicon cost model's terms (runtime/chip/sophon_cost.h); 0 keeps
    # the simpler model they refine
    gdma_clock_hz: float = 0.0
    gdma_burst_bytes: int = 0
    timestep_sync_cycles: int = 0
    dwpool_eu_bytes: int = 0
    int8_batch_pack: int = 0
    eltwise_eu_bytes: int = 0
    description: str = ""

    def __post_init__(self):
        """Every field checked once, here: the compiler and the generated C (hence
        the runtime) only ever see a profile that passed."""
        _text(self.name, "name", 1, 128)
        _text(self.description, "description", 0, 4096)
        _int_in(self.npu_num, "npu_num", 1, 1024)
        _int_in(self.lmem_bytes_per_lane, "lmem_bytes_per_lane", 64, 1 << 30, " and a multiple of 4")
        if self.lmem_bytes_per_lane % 4:
            raise SophonError(f"chip profile: lmem_bytes_per_lane must be a multiple of 4, "
                              f"got {self.lmem_bytes_per_lane}")
        if self.npu_num * self.lmem_bytes_per_lane > MAX_LMEM_BYTES:
            raise SophonError(f"chip profile: npu_num x lmem_bytes_per_lane must be at most {MAX_LMEM_BYTES} "
                              f"bytes (the emulator holds it in host memory), got {self.lmem_bytes_per_lane * self.npu_num}")
        _int_in(self.lmem_banks, "lmem_banks", 1, 1024)
        _int_in(self.eu_bytes, "eu_bytes", 4, 1 << 16, " and a power of two")
        if self.eu_bytes & (self.eu_bytes - 1):
            raise SophonError(f"chip profile: eu_bytes must be a power of two >= 4, got {self.eu_bytes}")
        if not isinstance(self.has_int8, bool):
            raise SophonError(f"chip profile: has_int8 must be true or false, got {self.has_int8!r}")
        _positive_finite(self.clock_hz, "clock_hz")
        _positive_finite(self.ddr_bytes_per_second, "ddr_bytes_per_second")
        _positive_finite(self.power_watts, "power_watts")
        _int_in(self.gdma_latency_cycles, "gdma_latency_cycles", 0, _INT32_MAX)
        _int_in(self.tiu_latency_cycles, "tiu_latency_cycles", 0, _INT32_MAX)
        _int_in(self.int8_macs_per_eu, "int8_macs_per_eu", 1, 64)
        if self.gdma_clock_hz != 0:  # 0: the TIU clock
            _positive_finite(self.gdma_clock_hz, "gdma_clock_hz")
        _int_in(self.gdma_burst_bytes, "gdma_burst_bytes", 0, 1 << 20)
        _int_in(self.timestep_sync_cycles, "timestep_sync_cycles", 0, _INT32_MAX)
        _int_in(self.dwpool_eu_bytes, "dwpool_eu_bytes", 0, 1 << 16)
        if self.int8_batch_pack not in (0, 1, 2, 4) or isinstance(self.int8_batch_pack, bool):
            raise SophonError(f"chip profile: int8_batch_pack must be 0, 1, 2 or 4 (batch items in a 32-bit "
                              f"word), got {self.int8_batch_pack!r}")
        _int_in(self.eltwise_eu_bytes, "eltwise_eu_bytes", 0, 1 << 16)

    # ---- derived figures -------------------------------------------------
    def eu_num(self, dtype: str = "float32") -> int:
        """Elements one lane's execution units take per cycle (sophon_eu_num)."""
        per_eu = self.int8_macs_per_eu if dtype == "int8" else 1
        return self.eu_bytes // DTYPE_BYTES[dtype] * max(per_eu, 1)

    @property
    def lmem_bytes(self) -> int:
        return self.npu_num * self.lmem_bytes_per_lane

    @property
    def peak_flops(self) -> float:
        """FP32 peak: every EU of every lane does one multiply-add per cycle."""
        return self.npu_num * self.eu_num("float32") * 2 * self.clock_hz

    @property
    def peak_int8_ops(self) -> float:
        """INT8 peak (0 without an INT8 datapath)."""
        return self.npu_num * self.eu_num("int8") * 2 * self.clock_hz if self.has_int8 else 0.0

    @property
    def ddr_bytes_per_cycle(self) -> float:
        """DDR bytes per cycle of the TIU clock (the clock every counter uses)."""
        return self.ddr_bytes_per_second / self.clock_hz

    # ---- (de)serialisation ------------------------------------------------
    def replace(self, **changes) -> "Chip":
        """A variant of this profile, e.g. ``chip.replace(lmem_bytes_per_lane=4096)``."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def c_initializer(self) -> str:
        """The ``sophon_chip`` struct literal for generated C (C89 positional order)."""
        fields = [
            c_string(self.name),
            str(self.npu_num),
            f"{self.lmem_bytes_per_lane}LL",
            str(self.lmem_banks),
            str(self.eu_bytes),
            "1" if self.has_int8 else "0",
            repr(float(self.clock_hz)),
            repr(float(self.ddr_bytes_per_second)),
            repr(float(self.power_watts)),
            str(self.gdma_latency_cycles),
            str(self.tiu_latency_cycles),
            str(self.int8_macs_per_eu),
            repr(float(self.gdma_clock_hz)),
            str(self.gdma_burst_bytes),
            str(self.timestep_sync_cycles),
            str(self.dwpool_eu_bytes),
            str(self.int8_batch_pack),
            str(self.eltwise_eu_bytes),
        ]
        return "{" + ", ".join(fields) + "}"


def available_chips() -> list[str]:
    return sorted(p.stem for p in CHIPS_DIR.glob("*.json"))


# keys a profile file may hold besides the fields (bundled files cite their sources)
_NOTE_KEYS = {"sources"}


def _from_mapping(data, origin: str) -> Chip:
    if not isinstance(data, dict):
        raise SophonError(f"{origin}: a chip profile must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(Chip)}
    unknown = sorted(set(data) - set(fields) - _NOTE_KEYS)
    if unknown:
        raise SophonError(f"{origin}: unknown chip profile field {unknown[0]!r} (fields: {', '.join(fields)})")
    missing = [n for n, f in fields.items()
               if n not in data and f.default is dataclasses.MISSING]
    if missing:
        raise SophonError(f"{origin}: chip profile field {missing[0]!r} is missing")
    try:
        return Chip(**{k: v for k, v in data.items() if k in fields})
    except SophonError as err:
        raise SophonError(f"{origin}: {err}") from None


def load_chip(path: "str | Path") -> Chip:
    """A chip profile from a JSON file the user names explicitly (the bundled
    files' format; every field validated). The CLI's ``--chip FILE.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise SophonError(f"chip profile {path}: cannot read it ({err.strerror or err})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise SophonError(f"chip profile {path}: not valid JSON ({err})") from None
    return _from_mapping(data, f"chip profile {path}")


def get_chip(chip: "str | Chip") -> Chip:
    """A bundled chip profile by name (``"bm1680"``) or a Chip passed through.
    Only the names of :func:`available_chips` are accepted, never a path; a
    profile of one's own comes from :func:`load_chip` or ``Chip(...)``."""
    if isinstance(chip, Chip):
        return chip
    names = available_chips()
    if not isinstance(chip, str) or chip not in names:
        hint = " (a profile file is loaded with tvm_sophon.load_chip(path), or --chip FILE.json)" \
            if isinstance(chip, str) and ("/" in chip or "\\" in chip or chip.endswith(".json")) else ""
        raise SophonError(f"unknown chip profile {chip!r}; available: {', '.join(names)}{hint}")
    return _from_mapping(json.loads((CHIPS_DIR / f"{chip}.json").read_text()), f"bundled chip profile {chip}")
