"""Where the model runs and in which precision: one helper for training and sampling.

Mixed precision (Micikevicius et al., arXiv 1710.03740): matrix multiplies run in a 16-bit
format while weights, optimizer state and reductions stay in float32.

* bf16 (bfloat16) keeps float32's exponent range, so no loss scaling is needed. It works
  under `torch.autocast` on CPUs and on CUDA GPUs that support it.
* fp16 has a narrow exponent range: small gradients underflow to zero. A gradient scaler
  multiplies the loss by a large factor before backward and divides it out before the
  optimizer step, skipping steps whose gradients overflowed. CUDA only here.

amp="auto" picks bf16 on a CUDA GPU that supports it (fp16 otherwise). On a CPU it depends on
the CPU: with native bf16 instructions (AVX512_BF16 or AMX) bf16 autocast trained `tiny` 1.6x
and `small` 2.1x faster than float32 on the 2-core AMD EPYC we measured; without them (an Intel
Xeon without either) it was 2-5x *slower*. So auto picks bf16 where `/proc/cpuinfo` lists
those flags and float32 elsewhere (bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> cuda if available else cpu; "cuda" without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                "device='cuda' was asked for, but no CUDA GPU is available; use 'cpu' or 'auto'"
            )
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")


# oneDNN's instruction-set names below its first with native bf16 (AVX512_CORE_BF16). With
# ONEDNN_MAX_CPU_ISA set to one of them, oneDNN (which runs PyTorch's bf16 matmuls on a CPU)
# falls back to slow bf16 paths, as on a CPU that lacks the instructions.
_ONEDNN_ISAS_WITHOUT_BF16 = {
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"
}  # fmt: skip


def cpu_has_native_bf16() -> bool:
    """True if the CPU has bf16 matrix instructions (AVX512_BF16 or AMX), per /proc/cpuinfo,
    and oneDNN may use them (no `ONEDNN_MAX_CPU_ISA` below AVX512_CORE_BF16 in the
    environment; `bench/RESULTS.md` uses that variable to time a CPU without them)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_ISAS_WITHOUT_BF16:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: we cannot tell, so we do not assume it
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`, or None for float32."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp mode {amp!r}; choose one of {AMP_MODES}")
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(
            "amp='fp16' needs a CUDA GPU (fp16 autocast with a gradient scaler); on a CPU use "
            "amp='bf16' or amp='off'"
        )
    return torch.bfloat16 if amp == "bf16" else torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    """'bf16', 'fp16' or 'fp32': how a run's precision is recorded."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for a 16-bit dtype, or a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
