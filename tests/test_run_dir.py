"""The faults a run directory survives (ddlm.checkpoint.RunDir): a second writer, a corpus
that changed under a run, a full disk, a read-only folder, a lock left by a killed process,
and a signal in the middle of a save. Each ends in one line where it must stop, and in an
exact resume where it may go on."""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import fast_config, tiny_config, tiny_model, train_argv

import ddlm
from ddlm.checkpoint import RunDir, read_state
from ddlm.cli import main
from ddlm.data import load_corpus
from ddlm.files import CheckpointError, LockedError, SaveError
from ddlm.train import Trainer


def _cfg(steps: int):
    return fast_config(
        steps=steps, batch_size=2, seq_len=16, log_every=1, eval_batches=1, warmup_steps=1
    )


def _trainer(run, steps, corpus, **kw):
    return Trainer(tiny_model(), _cfg(steps), corpus, out_dir=run, progress=False, **kw)


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _one_error_line(err: str, command: str = "train") -> str:
    """The error line of a refused command: exactly one, and no traceback. (A progress bar
    may come before it on stderr; it is not an error.)"""
    lines = [line for line in err.splitlines() if "error" in line or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith(f"ddlm {command}: error: "), err
    return lines[0]


@pytest.fixture
def base(tmp_path, small_corpus):
    """A run checkpointed at step 2 of 4, and the same run done in one go (to compare)."""
    straight = _trainer(tmp_path / "straight", 4, small_corpus)
    straight.fit()
    _trainer(tmp_path / "base", 2, small_corpus).fit()
    return tmp_path / "base", straight.model


# ---- one writer per run directory ------------------------------------------------------


def test_a_second_writer_is_refused_at_once_naming_the_folder_and_the_process(
    base, small_corpus, tmp_path, capsys
):
    run, straight = base
    pid = str(os.getpid())
    with RunDir(run).lock():  # another writer, as far as the lock can tell
        assert (run / "lock").read_text().strip() == pid
        for resume in (True, False):
            with pytest.raises(LockedError, match=f"{run} is in use: process {pid} is writing"):
                _trainer(run, 4, small_corpus, resume=resume)
        capsys.readouterr()
        assert main(train_argv(run, "--resume", "--steps", "4")) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert str(run) in line and f"process {pid}" in line
        ddlm.DiffusionLM(tiny_config()).save_pretrained(tmp_path / "m")
        assert main(["average", str(tmp_path / "m"), str(tmp_path / "m"), "--out", str(run)]) == 1
        assert f"process {pid}" in _one_error_line(capsys.readouterr().err, "average")
        # Readers need no lock.
        assert read_state(run)["step"] == 2 and ddlm.DiffusionLM.from_pretrained(run)
    assert not (run / "lock").exists()  # released and removed
    resumed = _trainer(run, 4, small_corpus, resume=True)
    resumed.fit()
    assert _same_weights(resumed.model, straight)


def test_a_reader_racing_a_writer_reads_the_newer_checkpoint(base, monkeypatch):
    import ddlm.checkpoint as checkpoint

    run, _ = base
    real_read_json, raced = checkpoint.read_json, []

    def read_json(path):  # the writer saves step 3 and removes step 2 as the reader reads
        if path.name == "train_state.json" and not raced:
            raced.append(path)
            newer = run / "step-00000003" / "train_state.json"
            shutil.copytree(run / "step-00000002", newer.parent)
            newer.write_text(json.dumps({**real_read_json(newer), "step": 3}))
            (run / "checkpoint.json").write_text(json.dumps({"folder": "step-00000003", "step": 3}))
            shutil.rmtree(run / "step-00000002")
        return real_read_json(path)

    monkeypatch.setattr(checkpoint, "read_json", read_json)
    assert read_state(run)["step"] == 3 and raced


def test_a_lock_file_left_by_a_killed_process_does_not_block_the_resume(base, small_corpus):
    run, straight = base
    (run / "lock").write_text("999999\n")  # what kill -9 leaves: the file, but no lock
    resumed = _trainer(run, 4, small_corpus, resume=True)
    resumed.fit()
    assert _same_weights(resumed.model, straight) and not (run / "lock").exists()


def test_a_trainer_does_not_overwrite_a_run_that_moved_on_without_it(base, small_corpus):
    run, _ = base
    idle = _trainer(run, 4, small_corpus, resume=True)  # read at step 2, then left alone
    _trainer(run, 3, small_corpus, resume=True).fit()  # meanwhile another writer: step 3
    with pytest.raises(CheckpointError, match="moved on to step 3 since this Trainer"):
        idle.fit()
    assert read_state(run)["step"] == 3


# ---- the corpus a run resumes on ----------------------------------------------------


def test_a_changed_corpus_is_refused_then_accepted_with_new_data(tmp_path, capsys):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_bytes(b"The first corpus of this run, a line of plain text. " * 40)
    new.write_bytes(b"Another corpus altogether, edited after the run began! " * 40)
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (old, new)}
    run = tmp_path / "run"
    assert main(train_argv(run, "--steps", "2", data=str(old))) == 0
    capsys.readouterr()
    assert main(train_argv(run, "--steps", "3", "--resume", data=str(new))) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert digest[old] in line and digest[new] in line and "--new-data" in line
    assert read_state(run)["step"] == 2
    assert main(train_argv(run, "--steps", "3", "--resume", "--new-data", data=str(new))) == 0
    record = json.loads((run / "train_config.json").read_text())["run"]
    assert record["corpus_sha256"] == digest[new]
    size = {p: len(p.read_bytes()) for p in (old, new)}
    assert record["data_changes"] == [
        {
            "step": 2,
            "from": {"sha256": digest[old], "size": size[old]},
            "to": {"sha256": digest[new], "size": size[new]},
        }
    ]
    # From now on the run's corpus is the new one: it resumes on it, and refuses the old one.
    assert main(train_argv(run, "--steps", "4", "--resume", data=str(new))) == 0
    assert main(train_argv(run, "--steps", "5", "--resume", data=str(old))) == 1
    assert read_state(run)["step"] == 4
    # The record of the change stays in train_config.json.
    assert len(json.loads((run / "train_config.json").read_text())["run"]["data_changes"]) == 1


def test_on_new_data_the_data_position_restarts(base, small_corpus):
    run, _ = base
    other = torch.flip(small_corpus, (0,))
    with pytest.raises(CheckpointError, match="trained on a corpus with sha256"):
        _trainer(run, 4, other, resume=True)
    t = _trainer(run, 4, other, resume=True, new_data=True)
    fresh = torch.Generator().manual_seed(0).get_state()  # seed 0, rank 0
    assert t.step == 2 and torch.equal(t.batcher.state(), fresh)
    t.fit()
    assert read_state(run)["corpus"]["sha256"] == t.corpus_id["sha256"]


# ---- a save that cannot be written ----------------------------------------------------


def _failing_replace(monkeypatch, k: int, error: BaseException):
    """os.replace that raises `error` at its k-th call. The renames of `fit`: train_config.json,
    then those of the save: the step folder's three files, the pointer, config.json and
    model.safetensors."""
    real, calls = os.replace, []

    def replace(src, dst):
        if len(calls) == k:
            raise error
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


FOLDER_FILES = ("train_state.safetensors", "train_state.json", "model.safetensors")
MODEL_FILES = ("config.json", "model.safetensors")


@pytest.mark.parametrize("k", range(6))
def test_a_full_disk_at_any_write_of_a_save_is_one_error_and_loses_nothing(
    base, small_corpus, monkeypatch, k
):
    run, straight = base
    t = _trainer(run, 4, small_corpus, resume=True)
    _failing_replace(monkeypatch, 1 + k, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(SaveError) as e:
        t.fit()
    monkeypatch.undo()
    kept = 2 if k < 4 else 4  # the save's fourth rename switches the pointer to step 4
    message = str(e.value)
    written = [*(f"step-00000004/{n}" for n in FOLDER_FILES), "checkpoint.json", *MODEL_FILES]
    assert "\n" not in message
    assert message.startswith(f"cannot write {run}/{written[k]}: No space left on device;")
    assert f"the run in {run} keeps its checkpoint of step {kept}" in message
    assert read_state(run)["step"] == kept
    folders = sorted(p.name for p in run.glob("step-*"))  # the half-written one is gone
    assert folders == ["step-00000002"] if k < 4 else ["step-00000002", "step-00000004"]
    assert not list(run.rglob("*.tmp")) and not (run / "lock").exists()
    resumed = _trainer(run, 4, small_corpus, resume=True)
    resumed.fit()
    assert _same_weights(resumed.model, straight)


def test_the_command_line_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _failing_replace(monkeypatch, 0, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert main(train_argv(run, "--steps", "2")) == 1  # train_config.json is the first write
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"ddlm train: error: cannot write {run}/train_config.json: No space left on device; "
        f"the run in {run} has no checkpoint"
    )


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_run_directory_is_one_error_and_stays_readable(
    base, small_corpus, monkeypatch, capsys, code
):
    # Tests run as root, whom chmod does not stop: every open for writing in the run
    # directory fails instead, as on a read-only mount (EROFS) or without permission (EACCES).
    run, _ = base
    real_open = os.open

    def read_only_open(path, flags, *a, **kw):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writes and os.path.abspath(path).startswith(str(run)):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(SaveError, match=f"cannot write {run}/lock: {os.strerror(code)}"):
        _trainer(run, 4, small_corpus, resume=True)
    capsys.readouterr()
    assert main(train_argv(run, "--steps", "4", "--resume")) == 1
    assert "keeps its checkpoint of step 2" in _one_error_line(capsys.readouterr().err)
    assert read_state(run)["step"] == 2 and ddlm.DiffusionLM.from_pretrained(run)


@contextlib.contextmanager
def _mounted(*args: str, target):
    """`mount ARGS TARGET` for the body (root on Linux only; the test is skipped elsewhere)."""
    r = subprocess.run(["mount", *args, str(target)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount here: {r.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_real_full_disk_on_a_small_tmpfs(base, small_corpus, tmp_path):
    run, straight = base
    disk = tmp_path / "disk"
    disk.mkdir()
    used = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    weights = (run / "model.safetensors").stat().st_size
    # Room for the run as it is and one more weights file: the next step folder does not fit.
    with _mounted("-t", "tmpfs", "-o", f"size={used + weights + 64 * 1024}", "tmpfs", target=disk):
        shutil.copytree(run, disk / "run")
        t = _trainer(disk / "run", 4, small_corpus, resume=True)
        with pytest.raises(SaveError, match="No space left on device.*checkpoint of step 2"):
            t.fit()
        assert read_state(disk / "run")["step"] == 2
        assert [p.name for p in (disk / "run").glob("step-*")] == ["step-00000002"]
        assert not list((disk / "run").rglob("*.tmp")) and not (disk / "run" / "lock").exists()
        shutil.copytree(disk / "run", tmp_path / "rescued")  # the user moves it somewhere roomier
    resumed = _trainer(tmp_path / "rescued", 4, small_corpus, resume=True)
    resumed.fit()
    assert _same_weights(resumed.model, straight)


def test_a_real_read_only_mount(base, small_corpus, capsys):
    run, _ = base
    with _mounted("--bind", str(run), target=run):
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(run)], capture_output=True)
        if r.returncode or not os.statvfs(run).f_flag & os.ST_RDONLY:
            pytest.skip("cannot make a read-only bind mount here")
        capsys.readouterr()
        assert main(train_argv(run, "--steps", "4", "--resume")) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert f"cannot write {run}/lock: Read-only file system" in line
        assert read_state(run)["step"] == 2 and ddlm.DiffusionLM.from_pretrained(run)


# ---- a signal during a save -----------------------------------------------------------


def test_ctrl_c_twice_during_a_save_waits_for_it(base, small_corpus, monkeypatch):
    from ddlm.cli import _fit_until_signalled

    run, _ = base
    t = _trainer(run, 4, small_corpus, resume=True)
    real_save = RunDir.save

    def save_interrupted(self, *a, **kw):  # Ctrl-C, Ctrl-C in the middle of writing
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        real_save(self, *a, **kw)

    monkeypatch.setattr(RunDir, "save", save_interrupted)
    result, signum = _fit_until_signalled(t)
    assert signum == signal.SIGINT and result["step"] == 4
    assert read_state(run)["step"] == 4 and [p.name for p in run.glob("step-*")] == [
        "step-00000004"
    ]


def test_an_interrupt_inside_a_save_abandons_it_cleanly(base, small_corpus, monkeypatch):
    run, _ = base
    t = _trainer(run, 4, small_corpus, resume=True)
    _failing_replace(monkeypatch, 2, KeyboardInterrupt())  # mid-folder, from Python
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    monkeypatch.undo()
    assert read_state(run)["step"] == 2 and [p.name for p in run.glob("step-*")] == [
        "step-00000002"
    ]
    assert not (run / "lock").exists()


# ---- two real processes ------------------------------------------------------------------


@pytest.mark.slow
def test_two_trainers_on_one_run_directory(tmp_path, small_corpus):
    out = tmp_path / "run"
    argv = train_argv(out, "--steps", "100000", "--ckpt-every", "1")
    first = subprocess.Popen(
        [sys.executable, "-m", "ddlm", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "checkpoint.json").exists():
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "ddlm", *argv, "--resume"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.poll() is None  # the first one is still training
        assert second.returncode == 1
        line = _one_error_line(second.stderr)
        assert f"{out} is in use: process {first.pid} is writing there" in line
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM and not (out / "lock").exists()
    # The first run is intact and resumes.
    step = read_state(out)["step"]
    model = ddlm.DiffusionLM.from_pretrained(out)
    t = Trainer(
        model,  # resuming loads the run's weights into it
        fast_config(steps=step + 1, batch_size=2, seq_len=32),
        load_corpus("pydoc-topics"),
        out_dir=out,
        resume=True,
        progress=False,
    )
    assert t.step == step and t.fit()["step"] == step + 1
