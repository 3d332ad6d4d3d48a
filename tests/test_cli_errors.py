"""Every bad input to `fl-crb` gets one clear line naming the flag, file or field and the
fix; exit non-zero, no traceback, no hang, nothing nonsensical accepted (issue 20, item 5).

Flags are refused while parsing (`fl_crb.commands.arguments`): argparse's
`fl-crb CMD: error: argument --FLAG: got VALUE; expected ...`, exit 2. Damaged run
folders, checkpoints and JSON files are refused by name with the way to recover; a torn
last line of metrics.jsonl is dropped on resume with a warning. Ctrl-C is one line and
exit 130. Files are replaced atomically (`fl_crb.files`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_crb import cli
from fl_crb.cli import main
from fl_crb.files import atomic_file, read_json_file, write_atomically

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "topologies" / "tiny.yaml")
TRAIN = ["train", "--topology", TINY, "--slots", "20", "--seed", "3"]
A_FILE = str(ROOT / "pyproject.toml")
"""An existing file, given where a folder is expected."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _refused(argv: list[str], capsys) -> str:
    """argparse's error for `argv` (exit 2, no traceback): the message line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


LIVE = ["--topology", TINY, "--policy", "round-robin", "--out", "/nonexistent/x"]
FEDERATE = ["federate", "--local", "--topology", TINY, "--out", "/nonexistent/x"]

BAD_FLAGS = [
    # (argv, the flag, a fragment of the reason)
    ([*TRAIN, "--out", "o", "--episodes", "1", "--threads", "0"], "--threads", "got '0'"),
    ([*TRAIN, "--out", "o", "--episodes", "0"], "--episodes", "from 1 to 999999"),
    ([*TRAIN, "--out", "o", "--episodes", "1e3"], "--episodes", "whole number"),
    (["train", "--topology", TINY, "--seed", "-1"], "--seed", "from 0 to 999999"),
    (["train", "--topology", TINY, "--seed", "1000000"], "--seed", "got '1000000'"),
    (["train", "--topology", TINY, "--slots", "0"], "--slots", "from 1 to 1000000"),
    (["train", "--topology", TINY, "--checkpoint-every", "0"], "--checkpoint-every", "got '0'"),
    (["train", "--topology", TINY, "--hidden", "0"], "--hidden", "from 1 to 4096"),
    (["train", "--topology", TINY, "--lstm-hidden", "1e9"], "--lstm-hidden", "whole number"),
    (["train", "--topology", TINY, "--terminal-code-bits", "-2"], "--terminal-code-bits", "0"),
    (["train", "--topology", TINY, "--terminals", "0"], "--terminals", "from 1 to 10000"),
    (["train", "--topology", TINY, "--terminals", "9" * 30], "--terminals", "10000"),
    (["train", "--topology", TINY, "--terminals", "9" * 5000], "--terminals", "too long"),
    (["train", "--topology", TINY, "--rate=-1Mbps"], "--rate", "cannot be negative"),
    (["train", "--topology", TINY, "--rate", "-1Mbps"], "--rate", "expected one argument"),
    (["train", "--topology", TINY, "--rate", "2"], "--rate", "without a unit"),
    (["train", "--topology", TINY, "--rate", "5ms"], "--rate", "which is a time"),
    (["train", "--topology", TINY, "--rate", "1e999Mbps"], "--rate", "too large"),
    (["train", "--topology", TINY, "--rate", "1Tbps"], "--rate", "unknown unit"),
    (["train", "--topology", TINY, "--rate", "200Gbps"], "--rate", "to 100Gbps"),
    (["train", "--topology", TINY, "--out", A_FILE], "--out", "is a file, not a folder"),
    (["train", "--topology", TINY, "--out", A_FILE + "/run"], "--out", "is a file"),
    (["simulate", "--topology", TINY, "--slots", "-5"], "--slots", "got '-5'"),
    (["simulate", "--topology", TINY, "--episodes", "nan"], "--episodes", "got 'nan'"),
    (["simulate", "--topology", TINY, "--seed", "0.5"], "--seed", "whole number"),
    (["evaluate", "--topology", TINY, "--episodes", "0"], "--episodes", "got '0'"),
    (["evaluate", "--topology", TINY, "--slots", "inf"], "--slots", "got 'inf'"),
    (["run-local", *LIVE, "--duration=-3s"], "--duration", "cannot be negative"),
    (["run-local", *LIVE, "--duration", "0s"], "--duration", "above 0s"),
    (["run-local", *LIVE, "--duration", "60"], "--duration", "without a unit"),
    (["run-local", *LIVE, "--duration", "30d"], "--duration", "unknown unit"),
    (["run-local", *LIVE, "--duration", "1e9s"], "--duration", "up to 604800s"),
    (["run-local", *LIVE, "--pace-ticks", "0"], "--pace-ticks", "from 1 to 1000"),
    (["run-local", *LIVE, "--realtime", "100"], "--realtime", "from 1 to 99"),
    (["run-local", *LIVE, "--seed", "-3"], "--seed", "got '-3'"),
    (["run-local", "--topology", TINY, "--out", A_FILE], "--out", "is a file"),
    ([*FEDERATE, "--duration", "1e999s"], "--duration", "too large"),
    ([*FEDERATE, "--epsilon", "nan"], "--epsilon", "in [0, 1]"),
    ([*FEDERATE, "--epsilon", "1.5"], "--epsilon", "got '1.5'"),
    ([*FEDERATE, "--lr", "inf"], "--lr", "in (0, 1]"),
    ([*FEDERATE, "--lr", "0"], "--lr", "in (0, 1]"),
    ([*FEDERATE, "--gamma", "1"], "--gamma", "in [0, 1)"),
    ([*FEDERATE, "--batch-size", "0"], "--batch-size", "got '0'"),
    ([*FEDERATE, "--pool-alpha", "-1"], "--pool-alpha", "in [0, 100]"),
    ([*FEDERATE, "--min-pool", "x"], "--min-pool", "whole number"),
    ([*FEDERATE, "--round-period", "0s"], "--round-period", "above 0s"),
    ([*FEDERATE, "--round-period", "2"], "--round-period", "without a unit"),
    ([*FEDERATE, "--batches-per-round", "-1"], "--batches-per-round", "from 0"),
    (["federate", "--local", "--out", A_FILE], "--out", "is a file"),
    (["emulate", "--topology", TINY, "--realtime", "-1"], "--realtime", "from 0 to 99"),
    (["emulate", "--topology", TINY, "--pretrain-episodes", "0"], "--pretrain-episodes", "'0'"),
    (["emulate", "--topology", TINY, "--out", A_FILE], "--out", "is a file"),
    (["keys", "--topology", TINY, "--days", "0"], "--days", "from 1 to 36500"),
    (["keys", "--topology", TINY, "--out", A_FILE], "--out", "is a file"),
    (["netcheck", "--max-concurrent", "0Mbps"], "--max-concurrent", "from 1kbps"),
    (["netcheck", "--terminals", "-1"], "--terminals", "got '-1'"),
    (["netcheck", "--out", A_FILE], "--out", "is a file"),
    (["study", "privacy", "--out", "o", "--terminals", "0"], "--terminals", "got '0'"),
    (["study", "privacy", "--out", "o", "--seed", "-1"], "--seed", "got '-1'"),
    (["study", "privacy", "--out", A_FILE], "--out", "is a file"),
    (["reproduce", "fig4", "--out", A_FILE], "--out", "is a file"),
]


@pytest.mark.parametrize(
    ("argv", "flag", "fragment"),
    BAD_FLAGS,
    ids=[f"{a[0]} {f} {a[-1][:12]}" for a, f, _ in BAD_FLAGS],
)
def test_a_bad_flag_is_refused_while_parsing_naming_the_flag(argv, flag, fragment, capsys):
    message = _refused(argv, capsys)
    assert f"argument {flag}: " in message
    assert fragment in message


def test_every_numeric_flag_has_a_checked_type():
    """No subcommand parses a number with bare `int` or `float` (which take -1, 0, nan)."""
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    unchecked = sorted(
        f"{name} {'/'.join(action.option_strings)}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if action.type in (int, float)
    )
    assert unchecked == []


# ── errors while running: one line, exit 2 (input) or 1 (a file), no traceback ─────────


def _fails(argv: list[str], capsys, status: int = 2) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_missing_topology_file_is_named(tmp_path: Path, capsys):
    missing = tmp_path / "nope.yaml"
    message = _fails(["simulate", "--topology", str(missing), "--policy", "random"], capsys)
    assert message.startswith("fl-crb simulate: ") and str(missing) in message


def test_a_training_run_whose_run_json_is_garbage_is_named_with_the_way_out(tmp_path: Path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"format": "fl-crb-training-run-1", "topo')
    message = _fails([*TRAIN, "--episodes", "1", "--out", str(out)], capsys)
    assert str(out / "run.json") in message and "not valid JSON" in message
    assert f"delete {out} to start over" in message


def test_a_run_json_that_is_not_utf8_is_named(tmp_path: Path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_bytes(b'{"format": "\xff\xfe"}')
    message = _fails([*TRAIN, "--episodes", "1", "--out", str(out)], capsys)
    assert str(out / "run.json") in message and "not UTF-8" in message


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished 2-episode run, checkpointed after each episode, validated once."""
    out = tmp_path_factory.mktemp("trained") / "run"
    argv = [*TRAIN, "--episodes", "2", "--checkpoint-every", "1", "--out", str(out)]
    assert main(argv) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_resume_drops_a_torn_last_metrics_line_with_a_warning(
    trained_run: Path, tmp_path: Path, capsys, caplog
):
    out = _copy(trained_run, tmp_path)
    metrics = out / "metrics.jsonl"
    text = metrics.read_text()
    metrics.write_text(text + text.splitlines()[-1][:25])  # a third line, cut mid-write
    assert main([*TRAIN, "--episodes", "3", "--checkpoint-every", "1", "--out", str(out)]) == 0
    assert str(metrics) in caplog.text and "dropped its last line" in caplog.text
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["episode"] for row in rows] == [0, 1, 2]


def test_a_garbage_metrics_line_before_the_last_is_an_error_naming_file_and_line(
    trained_run: Path, tmp_path: Path, capsys
):
    out = _copy(trained_run, tmp_path)
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(["{garbage", *lines[1:]]) + "\n")
    message = _fails([*TRAIN, "--episodes", "3", "--out", str(out)], capsys)
    assert f"{metrics}: line 1 is not a JSON object" in message
    assert f"delete {out}" in message


def test_a_garbage_checkpoint_state_is_named_with_the_way_out(
    trained_run: Path, tmp_path: Path, capsys
):
    out = _copy(trained_run, tmp_path)
    state = out / "checkpoint" / "state.json"
    state.write_text(state.read_text()[:40])
    message = _fails([*TRAIN, "--episodes", "3", "--out", str(out)], capsys)
    assert str(state) in message and "not valid JSON" in message
    assert f"delete {out / 'checkpoint'} to train this run again from episode 0" in message


@pytest.mark.parametrize("name", ["networks.pt", "pools.npz", "agents.npz"])
def test_a_truncated_checkpoint_file_is_named(trained_run: Path, tmp_path: Path, capsys, name):
    out = _copy(trained_run, tmp_path)
    damaged = out / "checkpoint" / name
    damaged.write_bytes(damaged.read_bytes()[:100])
    message = _fails([*TRAIN, "--episodes", "3", "--out", str(out)], capsys)
    assert f"{damaged}: the checkpoint file cannot be read" in message


def test_a_damaged_checkpoint_points_to_the_previous_one_when_there_is_one(
    trained_run: Path, tmp_path: Path, capsys
):
    out = _copy(trained_run, tmp_path)
    import shutil

    shutil.copytree(out / "checkpoint", out / "checkpoint.old")
    (out / "checkpoint" / "state.json").write_text("")
    message = _fails([*TRAIN, "--episodes", "3", "--out", str(out)], capsys)
    assert "it is empty" in message
    assert f"the previous checkpoint is in {out / 'checkpoint.old'}" in message


def test_evaluate_names_a_garbage_best_json(trained_run: Path, tmp_path: Path, capsys):
    out = _copy(trained_run, tmp_path)
    (out / "best.json").write_text("[1, 2")
    argv = ["evaluate", "--topology", TINY, "--policy", str(out), "--episodes", "1"]
    message = _fails([*argv, "--slots", "20"], capsys)
    assert str(out / "best.json") in message and "delete it and" in message


def test_compare_sim_names_a_garbage_run_json(tmp_path: Path, capsys):
    (tmp_path / "run.json").write_text("{")
    message = _fails(["compare-sim", str(tmp_path)], capsys)
    assert str(tmp_path / "run.json") in message and "not valid JSON" in message
    assert "not a folder" in _fails(["compare-sim", A_FILE], capsys)


# ── the top level: Ctrl-C, file errors, and real bugs ───────────────────────────────────


def _with_run(monkeypatch, raised: BaseException) -> None:
    """Make `fl-crb simulate` raise `raised` once its arguments are parsed."""
    from fl_crb.commands import simulate

    def run(args):
        raise raised

    monkeypatch.setattr(simulate, "run", run)


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    _with_run(monkeypatch, KeyboardInterrupt())
    assert main(["simulate", "--topology", TINY, "--policy", "random"]) == 130
    assert capsys.readouterr().err == "fl-crb simulate: interrupted\n"


def test_a_file_error_is_one_line_naming_the_file(monkeypatch, capsys):
    _with_run(monkeypatch, PermissionError(13, "Permission denied", "/root/secret"))
    message = _fails(["simulate", "--topology", TINY, "--policy", "random"], capsys, status=1)
    assert message == "fl-crb simulate: /root/secret: Permission denied"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    _with_run(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["simulate", "--topology", TINY, "--policy", "random"])
    _with_run(monkeypatch, ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(ConnectionResetError):
        main(["simulate", "--topology", TINY, "--policy", "random"])


def test_sigint_during_training_is_one_line_exit_130_and_the_run_resumes(tmp_path: Path):
    out = tmp_path / "run"
    argv = [*TRAIN, "--episodes", "100000", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fl_crb", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        # as a terminal's Ctrl-C finds it: a suite started in the background by a
        # non-interactive shell hands its children SIGINT ignored, and Python keeps that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        metrics = out / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training did not start within 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.endswith("fl-crb train: interrupted\n")
    assert err.count("interrupted") == 1
    assert main([*TRAIN, "--episodes", "1", "--out", str(out)]) == 0


# ── atomic writes ───────────────────────────────────────────────────────────────────


def test_write_atomically_replaces_the_whole_file(tmp_path: Path):
    path = tmp_path / "summary.json"
    write_atomically(path, "old\n")
    write_atomically(path, b"new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"the old weights")

    class Crash(Exception):
        pass

    with pytest.raises(Crash), atomic_file(path) as file:
        file.write(b"half of the new")
        raise Crash
    assert path.read_bytes() == b"the old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_read_json_file_names_the_file_the_place_and_the_way_out(tmp_path: Path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1,\n "b": ')
    with pytest.raises(ValueError) as error:
        read_json_file(path, "thing", "delete it")
    assert str(error.value).startswith(f"{path}: the thing is not valid JSON (")
    assert "line 2 column" in str(error.value) and str(error.value).endswith("; delete it")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
