"""Smoke tests of the benches' building blocks: they run and return what they promise. No
timing is asserted (the benches print timings; tests only check that they can)."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_activation_speed_times_each_activation():
    bench = _load("activation_speed")
    threads = torch.get_num_threads()
    try:
        med = bench.race(threads=1, repeats=1, batch=2, seq_len=16)
    finally:
        torch.set_num_threads(threads)
    assert sorted(med) == sorted(bench.ACTIVATIONS) and all(t > 0 for t in med.values())


def test_attention_kernels_agree_and_are_timed():
    bench = _load("attention_kernels")
    q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))
    ref = bench.written_out(q, k, v)
    for fn in (bench.flash, bench.math_kernel, bench.attend):
        torch.testing.assert_close(fn(q, k, v), ref, rtol=1e-4, atol=1e-5)
    t = bench.time_kernels((1, 2, 8, 4), torch.float32, repeats=1)
    assert sorted(t) == sorted(bench.KERNELS) and all(s > 0 for s in t.values())


@pytest.mark.slow
def test_attention_kernels_compiled_row_matches_the_written_out_form(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # inductor's cache
    bench = _load("attention_kernels")
    q, k, v = (torch.randn(1, 2, 8, 4, requires_grad=True) for _ in range(3))
    compiled = bench.compiled_written_out()
    out, ref = compiled(q, k, v), bench.written_out(q, k, v)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    got = torch.autograd.grad(out.sum(), (q, k, v))
    want = torch.autograd.grad(ref.sum(), (q, k, v))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_short_prompt_bench_records_the_weights_it_measured(tmp_path):
    import json
    import subprocess
    import sys

    from ddlm.files import sha256_file
    from ddlm.model import WEIGHTS_NAME, resolve_checkpoint
    from ddlm.provenance import code_provenance

    out = tmp_path / "sp.json"
    cmd = [sys.executable, str(BENCH / "short_prompts.py"), "--length", "8", "--settings", "pmi"]
    subprocess.run([*cmd, "--show", "0", "--json", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["weights_sha256"] == sha256_file(resolve_checkpoint("tiny") / WEIGHTS_NAME)
    assert result["judge_weights_sha256"] == sha256_file(
        resolve_checkpoint("tiny-ar") / WEIGHTS_NAME
    )
    assert result["provenance"] == code_provenance()  # revision, dirty flag, package hash
    row = result["results"]["pmi"]
    assert len(result["prompts"]) == 13 and 0 <= row["known_words"] <= 1
    assert set(row["samples"]) == set(result["prompts"])


def test_reship_script_parses_and_refuses_an_unknown_step():
    import subprocess

    script = BENCH.parent / "data" / "checkpoints" / "reship.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # it parses
    done = subprocess.run(["bash", str(script), "nonsense"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "steps: eval findings bench samples notebooks gallery" in done.stderr


def test_bench_rows_keep_their_meaning_whatever_the_defaults():
    from ddlm import SamplerConfig

    sp = _load("short_prompts")
    default = SamplerConfig()
    for name, fields in sp.SETTINGS.items():
        c = sp.config_for(name)
        pinned = ("min_gap", "no_repeat", "order_bias")
        if name.startswith("defaults"):  # these follow the defaults
            assert all(getattr(c, f) == getattr(default, f) for f in pinned)
        else:  # every other row runs with no gap, rule or order unless it names them
            assert all(getattr(c, f) == fields.get(f, 0) for f in pinned), name
    new = "pmi,min_gap12,no_repeat12,order_bias0.02@64"
    assert sp.config_for(new) == default.with_options(steps=64)
    lp = _load("long_prompts")  # its rows are short_prompts' own
    assert all(lp.config_for(n) == sp.config_for(n) for n in lp.DEFAULT_SETTINGS)


def test_train_throughput_measures_a_step_and_refuses_an_unknown_precision():
    import subprocess
    import sys

    bench = _load("train_throughput")
    assert bench.matmul_peak(None, n=64, repeats=1) > 0
    r = bench.measure("tiny", None, "eager", steps=1)
    assert r["tok_s"] > 0 and r["flops"] > 0 and r["step_s"] > 0
    # the attention bound: attention takes real time, so against a faster peak the matmuls
    # shrink and the fixed attention time weighs more: the bound falls
    attn_s, bound = bench.attention_bound("tiny", None, peak=1e11, repeats=1)
    _, faster_peak = bench.attention_bound("tiny", None, peak=1e13, repeats=1)
    assert attn_s > 0 and 0 < faster_peak < bound
    cmd = [sys.executable, str(BENCH / "train_throughput.py"), "--precisions", "fp16"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and "--precisions takes fp32 and/or bf16" in done.stderr


def test_the_original_design_trains_and_counts_its_flops_as_ddlm_does():
    import math
    import sys

    from ddlm.model import DiffusionLM, ModelConfig

    sys.path.insert(0, str(BENCH))  # vs_original imports its neighbours
    try:
        original = _load("original_design")
        versus = _load("vs_original")
    finally:
        sys.path.remove(str(BENCH))
    torch.manual_seed(0)
    model = original.OriginalDesign(dim=32, layers=2, heads=4, latent=8, max_len=64)
    x0 = torch.randint(0, 256, (2, 16))
    loss = original.original_loss(model, x0)
    loss.backward()
    assert math.isfinite(loss.item()) and all(p.grad is not None for p in model.parameters())
    # at the original's own size: the FFN is 1536 wide, and its FLOPs are counted by ddlm's
    # rule (6 per matmul weight, plus attention), which gives seed's count for seed's shape
    full = original.OriginalDesign()
    assert full.blocks[0].ffn.w1.out_features == 1536
    seed = DiffusionLM(ModelConfig.preset("seed"))
    ours = versus.original_flops_per_token(full, 768)
    assert ours - 6 * full.matmul_params() == seed.flops_per_token(768) - 6 * seed.matmul_params()


def test_benches_name_the_instruction_set_limits_they_ran_under(monkeypatch):
    bench = _load("train_throughput")
    for k in bench.ISA_VARIABLES:
        monkeypatch.delenv(k, raising=False)
    assert bench.isa_limits() == "" and bench.command_line().startswith("python ")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert bench.isa_limits().endswith("ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2")
    assert bench.command_line().startswith(
        "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python "
    )
    assert bench.isa_limits() in bench.cpu_name()
