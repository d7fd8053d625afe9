"""student.bf16: auto resolves to bf16 only where the hardware runs it natively."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from taloop.core import precision
from taloop.params import validate_params
from taloop.params.schema import ConfigError


def _never() -> tuple[bool, str]:
    raise AssertionError("a forced setting must not probe the hardware")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_probe(native: bool, expected: str) -> None:
    resolved = precision.resolve("auto", probe=lambda: (native, "stubbed machine"))
    assert resolved.name == expected and resolved.bf16 is native
    assert resolved.record() == {
        "precision": expected,
        "bf16_setting": "auto",
        "reason": "auto: stubbed machine",
    }


@pytest.mark.parametrize(("setting", "expected"), [(True, "bf16"), (False, "fp32")])
def test_true_and_false_force_it(setting: bool, expected: str) -> None:
    assert precision.resolve(setting, probe=_never).name == expected


def _machine(monkeypatch: pytest.MonkeyPatch, capability: str, avx512_bf16: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    ("capability", "avx512_bf16", "amx", "native"),
    [
        ("AVX2", False, False, False),  # the AMD EPYC of issue 31: bf16 would be emulated, 24x slower
        ("AVX512", False, False, False),  # AVX-512 without its bf16 extension
        ("AVX512", True, False, True),
        ("AVX512", False, True, True),
        ("AVX2", True, False, False),  # ATEN_CPU_CAPABILITY=avx2 on a bf16 machine
    ],
)
def test_cpu_probe(
    monkeypatch: pytest.MonkeyPatch, capability: str, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    _machine(monkeypatch, capability, avx512_bf16, amx)
    ok, why = precision.native_bf16()
    assert ok is native
    assert capability in why


def test_onednn_capped_below_bf16_is_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, "AVX512", avx512_bf16=True)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert precision.native_bf16()[0] is False
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core_bf16")
    assert precision.native_bf16()[0] is True
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the newer name wins
    assert precision.native_bf16()[0] is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "")  # empty: unset
    assert precision.native_bf16()[0] is True


@pytest.mark.parametrize("native", [True, False])
def test_cuda_probe_counts_native_bf16_only(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    seen: dict[str, Any] = {}

    def supported(including_emulation: bool = True) -> bool:
        seen["including_emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "a stubbed GPU")
    assert precision.native_bf16()[0] is native
    assert seen == {"including_emulation": False}  # a T4 or V100 emulates bf16: not native


@pytest.mark.parametrize("value", ["auto", True, False])
def test_schema_takes_auto_and_booleans(raw_params: dict[str, Any], value: Any) -> None:
    raw_params["student"]["bf16"] = value
    assert validate_params(raw_params).student.bf16 == value


def test_schema_default_is_auto(raw_params: dict[str, Any]) -> None:
    del raw_params["student"]["bf16"]
    assert validate_params(raw_params).student.bf16 == "auto"


def test_schema_names_the_key_of_a_bad_setting(raw_params: dict[str, Any]) -> None:
    raw_params["student"]["bf16"] = "sometimes"
    with pytest.raises(ConfigError, match=r"student\.bf16"):
        validate_params(raw_params)
