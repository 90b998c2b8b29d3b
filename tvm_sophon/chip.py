"""The chip description: one JSON file per chip profile, read by the compiler and
emitted into generated C for the runtime (``sophon_chip``), so the two never hold
separate copies of the numbers."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import SophonError

CHIPS_DIR = Path(__file__).resolve().parent / "chips"

DTYPE_BYTES = {"float32": 4, "int8": 1, "int32": 4}


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
    description: str = ""

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
            json.dumps(self.name),
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
        ]
        return "{" + ", ".join(fields) + "}"


def available_chips() -> list[str]:
    return sorted(p.stem for p in CHIPS_DIR.glob("*.json"))


def get_chip(chip: "str | Chip") -> Chip:
    """A chip profile by name (``"bm1680"``) or a Chip passed through."""
    if isinstance(chip, Chip):
        return chip
    path = CHIPS_DIR / f"{chip}.json"
    if not path.is_file():
        raise SophonError(
            f"unknown chip profile {chip!r}; available: {', '.join(available_chips())}"
        )
    data = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Chip)}
    return Chip(**{k: v for k, v in data.items() if k in fields})
