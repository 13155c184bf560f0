import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import fast_config, tiny_config, tiny_model

import ddlm
from ddlm.callbacks import LogSamples
from ddlm.data import load_corpus, random_length
from ddlm.diffusion import clean_prefix_length
from ddlm.train import TrainConfig, Trainer, build_model, lr_at

cfg = fast_config


def test_loss_falls(small_corpus):
    t = Trainer(tiny_model(), cfg(steps=40, lr=3e-3), small_corpus, progress=False)
    records = []
    t.callbacks.append(records.append)
    t.fit()
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.5


def test_lr_schedule():
    c = cfg(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(100, c) == pytest.approx(0.1)
    assert lr_at(55, c) == pytest.approx(0.55)


def test_exact_resume(tmp_path, small_corpus):
    model_cfg = tiny_config(dropout=0.1)  # dropout: the global RNG must be restored too
    straight = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "a",
        progress=False,
    )
    straight.fit()
    half = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "b",
        progress=False,
    )
    half.callbacks.append(lambda r: r["step"] == 6 and half.request_stop())
    assert half.fit()["status"] == "interrupted"
    resumed = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    assert resumed.step == 6
    resumed.fit()
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    a_lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b_lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b_lines] == [r["step"] for r in a_lines] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in b_lines] == [r["loss"] for r in a_lines]


def test_state_dict_carries_the_loop_to_another_trainer(small_corpus):
    # The loop's state (counters, RNGs) plus the model's and the optimizer's: exact, in memory.
    model_cfg = tiny_config(dropout=0.1)
    straight = Trainer(build_model(model_cfg, 0), cfg(steps=8), small_corpus, progress=False)
    straight.fit()
    first = Trainer(build_model(model_cfg, 0), cfg(steps=8), small_corpus, progress=False)
    first.fit(stop_after=4)
    state = first.state_dict()  # now: building a model seeds the global RNG (dropout's)
    second = Trainer(build_model(model_cfg, 0), cfg(steps=8), small_corpus, progress=False)
    second.model.load_state_dict(first.model.state_dict())
    second.optimizer.load_state_dict(first.optimizer.state_dict())
    second.load_state_dict(state)
    assert second.step == 4
    second.fit()
    for (k, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_stop_after_splits_a_run_into_sittings_that_end_where_one_run_ends(tmp_path, small_corpus):
    model_cfg = tiny_config()
    straight = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "a",
        progress=False,
    )
    straight.fit()
    first = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "b",
        progress=False,
    )
    assert first.fit(stop_after=5)["status"] == "stopped" and first.step == 5
    second = Trainer(
        build_model(model_cfg, 0),
        cfg(steps=12),
        small_corpus,
        out_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    assert second.step == 5
    with pytest.raises(ValueError, match="stop_after"):
        second.fit(stop_after=5)
    assert second.fit(stop_after=8)["status"] == "stopped" and second.step == 8
    second.fit()  # the same Trainer goes on after a planned stop
    for (k, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_needs_a_run_and_refuses_other_configs(tmp_path, small_corpus):
    with pytest.raises(ddlm.checkpoint.CheckpointError):
        Trainer(tiny_model(), cfg(), small_corpus, out_dir=tmp_path, resume=True, progress=False)
    Trainer(tiny_model(), cfg(steps=2), small_corpus, out_dir=tmp_path, progress=False).fit()
    with pytest.raises(FileExistsError):
        Trainer(tiny_model(), cfg(steps=2), small_corpus, out_dir=tmp_path, progress=False)
    with pytest.raises(ddlm.checkpoint.CheckpointError, match="different model config"):
        Trainer(
            tiny_model(dim=64),
            cfg(steps=4),
            small_corpus,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_non_finite_loss_skips_the_step(small_corpus, monkeypatch):
    t = Trainer(tiny_model(), cfg(steps=3), small_corpus, progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    monkeypatch.setattr(
        ddlm.objectives,
        "diffusion_loss",
        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True),
    )
    t.fit()
    assert t.skipped_steps == 3
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_fp16_on_cpu_is_an_error():
    with pytest.raises(ValueError, match="CUDA"):
        Trainer(tiny_model(), cfg(amp="fp16"), torch.zeros(1000, dtype=torch.uint8), progress=False)


def test_bf16_autocast_on_cpu_trains(small_corpus):
    t = Trainer(tiny_model(), cfg(steps=4, amp="bf16"), small_corpus, progress=False)
    assert t.amp_dtype == torch.bfloat16
    out = t.fit()
    assert out["status"] == "complete" and torch.isfinite(torch.tensor(out["loss"]))


def test_bad_train_config():
    for bad in (
        dict(steps=0),
        dict(amp="fp8"),
        dict(device="tpu"),
        dict(lr=-1.0),
        dict(val_fraction=1.0),
        dict(t_power=0.0),
        dict(complementary=True, batch_size=3),
        dict(complementary=True, masking="count"),
        dict(complementary=True, t_power=2.0),
        dict(weighting="bert"),
        dict(masking="bogus"),  # every field with choices is checked against them
        dict(stratified_t="yes"),  # every field has its type
        dict(steps=True),
        dict(steps=12.0),
        dict(lr="1e-3"),
        dict(lr=float("nan")),
        dict(mask_eps=float("inf")),
    ):
        with pytest.raises(ValueError, match="TrainConfig"):
            cfg(**bad)
    with pytest.raises(ValueError, match="max_seq_len"):
        Trainer(
            tiny_model(max_seq_len=16),
            cfg(seq_len=32),
            torch.zeros(1000, dtype=torch.uint8),
            progress=False,
        )


def test_ar_model_trains_with_ar_loss_and_logs_samples(small_corpus):
    t = Trainer(
        tiny_model(causal=True),
        cfg(steps=30, lr=3e-3, eval_every=30),
        small_corpus,
        progress=False,
    )
    t.callbacks.append(LogSamples(t.model, b"The ", every=10, length=8, echo=None))
    records = []
    t.callbacks.append(records.append)
    out = t.fit()
    assert out["val_loss"] < 5.0 and len(out["sample"]) > 0
    # Samples land in the records of steps 10, 20 and 30 only.
    assert [r["step"] for r in records if "sample" in r] == [10, 20, 30]


@pytest.mark.slow
def test_kill_9_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ddlm",
        "train",
        "--data",
        "pydoc-topics",
        "--out",
        str(out),
        "--dim",
        "32",
        "--layers",
        "2",
        "--heads",
        "4",
        "--kv-latent-dim",
        "16",
        "--max-seq-len",
        "64",
        "--steps",
        "100000",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--ckpt-every",
        "1",
        "--eval-every",
        "0",
        "--sample-every",
        "0",
        "--amp",
        "off",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "checkpoint.json").exists():
            time.sleep(0.2)
        time.sleep(1.5)  # let it write several more checkpoints, then kill mid-flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    model = ddlm.DiffusionLM.from_pretrained(out)
    assert model(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 259)
    # kill -9 leaves the lock file with the dead process's PID, but no lock: the kernel
    # released it. The checkpoint is one unit behind a pointer: the run resumes.
    assert (out / "lock").read_text().strip() == str(proc.pid)
    t = Trainer(
        model,  # resuming loads the run's weights into it
        cfg(steps=10**6),
        load_corpus("pydoc-topics"),
        out_dir=out,
        resume=True,
        progress=False,
    )
    assert t.step >= 1 and not (out / "lock").exists()


def test_random_length_cuts_batches_to_16_to_T(small_corpus):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(2, 32, dtype=torch.long)
    lengths = {random_length(x0, 1.0, gen).shape[1] for _ in range(50)}
    assert len(lengths) > 5 and min(lengths) >= 16 and max(lengths) <= 32
    state = gen.get_state()
    assert random_length(x0, 0.0, gen).shape == (2, 32)
    assert torch.equal(gen.get_state(), state)  # frac 0 draws nothing: old runs replay exactly
    t = Trainer(tiny_model(), cfg(steps=2, random_length_frac=1.0), small_corpus, progress=False)
    assert t.fit()["status"] == "complete"
    assert 2 * 4 * 16 <= t.tokens_seen < 2 * 4 * 32  # bytes actually trained on, as cut
    with pytest.raises(ValueError, match="random_length_frac"):
        cfg(random_length_frac=1.5)


def test_prompt_frac_keeps_the_prompt_clean(small_corpus):
    t = Trainer(tiny_model(), cfg(steps=3, prompt_frac=0.5), small_corpus, progress=False)
    seen = []
    t.net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    assert t.fit()["status"] == "complete"
    train_inputs = seen[:3]  # one forward per step (grad_accum 1)
    assert all((x[:, :16] != ddlm.tokenizer.MASK_ID).all() for x in train_inputs)
    assert any((x[:, 16:] == ddlm.tokenizer.MASK_ID).any() for x in train_inputs)
    with pytest.raises(ValueError, match="prompt_frac"):
        cfg(prompt_frac=1.0)
    with pytest.raises(ValueError, match="causal"):
        Trainer(tiny_model(causal=True), cfg(prompt_frac=0.5), small_corpus, progress=False)


def test_clean_prefix_length_is_random_or_the_fixed_prompt():
    gen = torch.Generator().manual_seed(0)
    lengths = {clean_prefix_length(32, 0.0, 1.0, gen) for _ in range(60)}
    assert len(lengths) > 5 and min(lengths) >= 0 and max(lengths) < 32 - 15
    assert {clean_prefix_length(32, 0.25, 0.0, gen) for _ in range(5)} == {8}
    with pytest.raises(ValueError, match="clean_prefix_frac"):
        cfg(clean_prefix_frac=2.0)


def test_old_train_configs_with_retired_fields_still_load():
    old = {**cfg().to_dict(), "sample_every": 100, "sample_length": 64, "sample_steps": 32}
    assert TrainConfig.from_dict(old) == cfg()
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**cfg().to_dict(), "sample_evry": 1})


def test_amp_auto_follows_the_cpu(monkeypatch):
    import ddlm.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_amp("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_amp("auto", cpu) is None
    assert precision.resolve_amp("bf16", cpu) == torch.bfloat16  # asked for: always honoured


def test_a_onednn_isa_without_bf16_turns_native_bf16_off(monkeypatch):
    import ddlm.precision as precision

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    hardware = precision.cpu_has_native_bf16()  # what /proc/cpuinfo says
    for isa in ("AVX2", "avx512_core", "AVX512_CORE_VNNI"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert precision.cpu_has_native_bf16() is False, isa
    for isa in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL", ""):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert precision.cpu_has_native_bf16() is hardware, isa


def test_the_run_records_what_auto_chose_and_which_corpus(tmp_path, small_corpus):
    import hashlib

    Trainer(tiny_model(), cfg(steps=1), small_corpus, out_dir=tmp_path, progress=False).fit()
    saved = json.loads((tmp_path / "train_config.json").read_text())
    run = saved["run"]
    assert run["amp"] == "fp32" and run["device"] == "cpu"
    assert run["corpus_bytes"] == len(small_corpus)
    assert run["corpus_sha256"] == hashlib.sha256(small_corpus.numpy().tobytes()).hexdigest()
    assert TrainConfig.from_dict(saved) == cfg(steps=1)  # the facts are not options


def test_a_run_with_eos_trains_on_documents_and_records_them(tmp_path):
    from ddlm.tokenizer import EOS_ID

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"{i}.txt").write_text(f"document number {i} says hello to the model. " * 3)
    trainer = Trainer(
        tiny_model(),
        cfg(steps=2, eos=True),
        load_corpus(docs, eos=True),
        out_dir=tmp_path / "run",
        progress=False,
    )
    corpus = torch.cat([trainer.train_data, trainer.val_data])
    assert int((corpus == EOS_ID).sum()) == 6  # EOS ends each file, and is a training target
    trainer.fit()
    run = json.loads((tmp_path / "run" / "train_config.json").read_text())["run"]
    assert run["corpus_eos"] == 6 and run["corpus_symbols"] == len(corpus)
    assert "corpus_bytes" not in run


def test_flat_weighting_trains_and_still_reports_the_elbo(small_corpus):
    trainers = {
        w: Trainer(tiny_model(), cfg(steps=2, weighting=w), small_corpus, progress=False)
        for w in ("elbo", "flat")
    }
    trainers["flat"].model.load_state_dict(trainers["elbo"].model.state_dict())
    # The validation loss is the ELBO whatever the training weighting.
    assert trainers["flat"].evaluate() == trainers["elbo"].evaluate()
    out = trainers["flat"].fit()
    assert out["status"] == "complete" and torch.isfinite(torch.tensor(out["loss"]))


# ---- the trainer takes built parts ------------------------------------------------------


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_build_model_is_the_seeded_build_and_a_run_from_it_repeats(small_corpus):
    model_cfg, train = tiny_config(dropout=0.1), cfg(steps=4, seed=3, log_every=1)
    torch.manual_seed(train.seed)
    by_hand = ddlm.DiffusionLM(model_cfg)  # what Trainer(ModelConfig, ...) did before it trained
    after = torch.get_rng_state()  # dropout draws on from here
    assert _same(build_model(model_cfg, train.seed), by_hand)
    assert torch.equal(torch.get_rng_state(), after)
    assert not _same(build_model(model_cfg, 4), by_hand)

    def run(model):
        records = []
        Trainer(model, train, small_corpus, callbacks=[records.append], progress=False).fit()
        return [r["loss"] for r in records], model

    torch.set_rng_state(after)
    known, trained = run(by_hand)  # the run the old Trainer made from these configs
    for _ in range(2):
        losses, model = run(build_model(model_cfg, train.seed))
        assert losses == known and len(known) == 4 and _same(model, trained)


def test_the_trainer_steps_the_optimizer_it_is_given(small_corpus):
    model, train = tiny_model(), cfg(steps=3, lr=0.5, warmup_steps=2)
    sgd = torch.optim.SGD(model.parameters(), lr=123.0, momentum=0.9)
    t = Trainer(model, train, small_corpus, sgd, progress=False)
    assert t.optimizer is sgd
    t.fit()
    assert sgd.param_groups[0]["lr"] == lr_at(2, train)  # the schedule's, not the 123 it had
    states = [sgd.state[p] for p in model.parameters()]
    assert all(set(s) == {"momentum_buffer"} for s in states)  # SGD stepped, not AdamW
    default = Trainer(tiny_model(), train, small_corpus, progress=False)
    assert isinstance(default.optimizer, torch.optim.AdamW)
    groups = default.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [train.weight_decay, 0.0]
    assert groups[0]["betas"] == (train.beta1, train.beta2)


def test_resume_loads_the_optimizer_state_into_the_optimizer_given(tmp_path, small_corpus):
    train = cfg(steps=6, lr=0.1, warmup_steps=1)

    def trainer(out, **kw):
        model = tiny_model()
        sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return Trainer(model, train, small_corpus, sgd, out_dir=out, progress=False, **kw)

    straight = trainer(tmp_path / "a")
    straight.fit()
    trainer(tmp_path / "b").fit(stop_after=3)
    resumed = trainer(tmp_path / "b", resume=True)
    assert resumed.step == 3
    buffers = [resumed.optimizer.state[p]["momentum_buffer"] for p in resumed.model.parameters()]
    assert all(b.abs().sum() > 0 for b in buffers)  # the saved momentum, not a fresh start
    resumed.fit()
    assert _same(straight.model, resumed.model)


def test_the_trainer_refuses_configs_and_names_in_place_of_built_parts(small_corpus):
    with pytest.raises(TypeError, match=r"built model.*build_model\(config, seed\)"):
        Trainer(tiny_config(), cfg(), small_corpus, progress=False)
    with pytest.raises(TypeError, match="built model, not a str"):
        Trainer("tiny", cfg(), small_corpus, progress=False)
    with pytest.raises(TypeError, match=r"corpus.*load_corpus\(source, eos=train.eos\)"):
        Trainer(tiny_model(), cfg(), "pydoc-topics", progress=False)
    with pytest.raises(ValueError, match="1-D"):
        Trainer(tiny_model(), cfg(), small_corpus[:1000].view(10, 100), progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(tiny_model(), cfg().to_dict(), small_corpus, progress=False)
    with pytest.raises(TypeError, match="Optimizer"):
        Trainer(tiny_model(), cfg(), small_corpus, "adamw", progress=False)
    other = torch.optim.SGD(tiny_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not this model's"):
        Trainer(tiny_model(), cfg(), small_corpus, other, progress=False)
    with pytest.raises(TypeError, match="ModelConfig"):
        build_model(tiny_config().to_dict(), 0)
