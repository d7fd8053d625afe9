"""Which floating-point precision the student trains and decodes in on this machine.

``student.bf16: auto`` means bf16 autocast only where the hardware computes bf16 natively: a
CUDA device that supports it, or a CPU with AVX512_BF16 or AMX that torch's kernels may use.
Elsewhere bf16 autocast falls back to emulated kernels: measured on a 2-core AMD EPYC with
AVX2 only, a warm-up optimiser step took 100 s under bf16 against 4.2 s in fp32 (24x), while
on a CPU with avx512_bf16 it runs 1.4x faster than fp32. ``true`` and ``false`` force it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

Bf16Setting = bool | Literal["auto"]

# torch's CPU kernel levels that can run avx512_bf16 instructions; ATEN_CPU_CAPABILITY=avx2 on
# an AVX-512 machine caps torch below them, and ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) oneDNN.
_NATIVE_CAPABILITIES = ("AVX512",)
_NATIVE_ONEDNN_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL")


@dataclass(frozen=True)
class Precision:
    """The resolved precision: ``bf16`` is what the student runs; ``reason`` says why."""

    setting: Bf16Setting
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def record(self) -> dict[str, Any]:
        """What manifests, metrics and the run card hold."""
        return {"precision": self.name, "bf16_setting": self.setting, "reason": self.reason}


def native_bf16() -> tuple[bool, str]:
    """(whether this machine runs bf16 natively, the evidence in words)."""
    import torch

    if torch.cuda.is_available():
        ok = torch.cuda.is_bf16_supported(including_emulation=False)  # pre-Ampere GPUs emulate it
        return ok, f"CUDA device {torch.cuda.get_device_name()} {'supports' if ok else 'lacks'} bf16"
    capability = torch.backends.cpu.get_cpu_capability()
    cpu = torch.cpu
    hardware = bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )
    # oneDNN reads ONEDNN_MAX_CPU_ISA before its older name; unset or empty: no cap
    onednn_cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    if not hardware:
        return False, f"CPU without avx512_bf16 or AMX (torch kernels: {capability}): bf16 would be emulated"
    if capability not in _NATIVE_CAPABILITIES:
        return False, f"CPU has avx512_bf16, but torch is limited to {capability} kernels"
    if not onednn_cap.startswith(_NATIVE_ONEDNN_ISAS):
        return False, f"CPU has avx512_bf16, but oneDNN is limited to {onednn_cap} (ONEDNN_/DNNL_MAX_CPU_ISA)"
    return True, f"CPU with native bf16 (torch kernels: {capability})"


def resolve(setting: Bf16Setting, probe: Callable[[], tuple[bool, str]] = native_bf16) -> Precision:
    if setting == "auto":
        native, why = probe()
        return Precision(setting, native, f"auto: {why}")
    return Precision(setting, bool(setting), f"student.bf16: {str(setting).lower()} (forced)")


@functools.cache
def student(setting: Bf16Setting) -> Precision:
    """:func:`resolve` once per process, logged, for the stages."""
    resolved = resolve(setting)
    log.info("student precision: %s (%s)", resolved.name, resolved.reason)
    return resolved
