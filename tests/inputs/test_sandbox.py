"""Hostile programs against every sandbox mode available here.

Each test runs one attack and checks one property: the verdict is never a pass, and the host is
as it was (no process of the run's uid left, the work directory gone, no file written, no
connection made). A hostile program's own test asserts that its attack worked, so an attack that
got through would show up as a pass. Where a mode cannot stop an attack by design (process mode
has the host's network and filesystem), the test is an expected failure with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from rsft.inputs.sandbox import MODES, Limits, RunResult, Sandbox, Step, live_pids, probe

ROOT = os.geteuid() == 0
LIMITS = Limits(timeout=2.0, memory_mb=256, max_procs=16, max_output_bytes=1 << 20, disk_mb=32)


def _python_for(mode: str) -> str | None:
    """This interpreter if the mode can run it, else the system one (modes below bwrap need an
    interpreter an unprivileged uid can read; a pyenv under /root is not)."""
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and probe(mode, python) is None:
            return python
    return None


@pytest.fixture(scope="module", params=MODES)
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    python = _python_for(request.param)
    if python is None:
        pytest.skip(f"{request.param} mode is not available here: {probe(request.param, sys.executable)}")
    return Sandbox(request.param, LIMITS, python)


def run(sandbox: Sandbox, code: str, *tests: str) -> RunResult:
    return sandbox.run(code, [Step(t) for t in tests])


def assert_contained(result: RunResult) -> None:
    """The verdict is not a pass and nothing of the run is left on the host."""
    assert result.status != "ok" and result.passed == 0, result
    assert result.status != "error" and result.compiled, result  # the attack itself ran
    if result.uid is not None:
        assert live_pids(result.uid) == [], "a process of the run survived it"
    if result.workdir is not None:
        assert not os.path.exists(result.workdir)


def limitation(request: pytest.FixtureRequest, sandbox: Sandbox, modes: tuple[str, ...], reason: str) -> None:
    if sandbox.mode in modes:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{sandbox.mode} mode: {reason}"))


def world_dir(parent: str) -> Path:
    """A fresh world-accessible directory (tmp_path's parents are root-only, which hides it from the
    run's uid in every mode; this one shows what each mode does with a world-readable file)."""
    path = Path(tempfile.mkdtemp(prefix="rsft-test-", dir=parent))
    path.chmod(0o777)
    return path


# ---- positive ----

def test_correct_solution_passes_every_test(sandbox: Sandbox) -> None:
    r = run(sandbox, "def add(a, b):\n    return a + b", "assert add(1, 2) == 3", "assert add(-1, 1) == 0")
    assert (r.status, r.passed, r.total, r.compiled) == ("ok", 2, 2, True)


def test_partly_correct_solution_passes_some_tests(sandbox: Sandbox) -> None:
    r = run(sandbox, "def sq(x):\n    return x * 2", "assert sq(2) == 4", "assert sq(3) == 9", "assert sq(0) == 0")
    assert (r.status, r.passed, r.total) == ("failed", 2, 3)
    assert "step 1: AssertionError" in r.detail


def test_syntax_error_is_not_compiled(sandbox: Sandbox) -> None:
    r = run(sandbox, "def add(a, b) return a + b", "assert add(1, 2) == 3")
    assert (r.status, r.passed, r.compiled) == ("failed", 0, False)
    assert "SyntaxError" in r.detail


def test_work_directory_is_private_and_removed(sandbox: Sandbox) -> None:
    r = run(sandbox, "import os\nopen('left.txt', 'w').write('x')\nHERE = os.getcwd()",
            "assert os.listdir(HERE) == ['left.txt']")
    assert r.status == "ok"
    assert r.workdir is None if sandbox.mode == "bwrap" else not os.path.exists(r.workdir)


# ---- resources ----

def test_infinite_loop_times_out(sandbox: Sandbox) -> None:
    r = run(sandbox, "while True:\n    pass", "assert True")
    assert r.status == "timeout" and r.seconds < LIMITS.timeout + 1.5
    assert_contained(r)


def test_ignoring_sigterm_does_not_survive_the_timeout(sandbox: Sandbox) -> None:
    code = ("import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
            "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)")
    r = run(sandbox, code, "assert True")
    assert r.status == "timeout" and r.seconds < LIMITS.timeout + 1.5
    assert_contained(r)


@pytest.mark.skipif(not ROOT, reason="without root there is no uid of the run's own to limit")
def test_fork_bomb_is_bounded_and_killed(sandbox: Sandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert_contained(run(sandbox, code, "assert True"))


@pytest.mark.skipif(not ROOT, reason="without root there is no uid of the run's own to limit")
def test_process_count_is_limited(sandbox: Sandbox) -> None:
    code = ("import os, time\nkids = 0\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        kids += 1\n    except OSError:\n        break")
    r = run(sandbox, code, "assert kids >= 200, f'forked {kids}'")
    assert_contained(r)
    forked = int(re.search(r"forked (\d+)", r.detail).group(1))
    assert forked < LIMITS.max_procs


def test_memory_bomb_fails(sandbox: Sandbox) -> None:
    code = "hog = []\nwhile len(hog) < 400:\n    hog.append(bytearray(10 ** 7))"
    r = run(sandbox, code, "assert len(hog) >= 400")
    assert "MemoryError" in r.detail
    assert_contained(r)


def test_one_huge_file_is_cut_at_the_size_limit(sandbox: Sandbox) -> None:
    code = "with open('big', 'wb') as f:\n    for _ in range(4096):\n        f.write(b'x' * (1 << 20))"
    assert_contained(run(sandbox, code, "import os\nassert os.path.getsize('big') >= 1 << 32"))


def test_many_files_stop_at_the_disk_quota(request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    if sandbox.mode != "bwrap":
        pytest.skip(f"{sandbox.mode} mode limits each file, not their total (the work dir is removed afterwards)")
    code = "n = 0\nfor n in range(4096):\n    with open(f'f{n}', 'wb') as f:\n        f.write(b'x' * ((1 << 20) - 1))"
    r = run(sandbox, code, "assert n == 4095")
    assert "No space left" in r.detail
    assert_contained(r)


def test_stdout_flood_is_capped(sandbox: Sandbox) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n    sys.stderr.write('y' * 100000)"
    r = run(sandbox, code, "assert True")
    assert r.status in ("crashed", "failed") and r.seconds < LIMITS.timeout
    assert len(r.detail) <= 2000
    assert_contained(r)


# ---- isolation ----

def test_no_network_to_a_local_listener(request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    limitation(request, sandbox, ("process",), "shares the host's network")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    code = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n" \
           "    connected = True\nexcept OSError:\n    connected = False"
    try:
        r = run(sandbox, code, "assert connected")
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert_contained(r)


@pytest.mark.skipif(not ROOT, reason="without root the run has the host user's file permissions")
def test_secret_in_a_private_host_directory_is_unreadable(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = uuid.uuid4().hex
    (tmp_path / "secret.txt").write_text(secret)
    code = f"try:\n    got = open({str(tmp_path / 'secret.txt')!r}).read()\nexcept OSError:\n    got = None\nprint(got)"
    r = run(sandbox, code, f"assert got == {secret!r}, got")
    assert secret not in r.detail
    assert_contained(r)


def test_world_readable_secret_is_invisible(request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    limitation(request, sandbox, ("unshare", "process"), "sees the host filesystem with an unprivileged uid's rights")
    folder = world_dir("/tmp")
    try:
        secret = uuid.uuid4().hex
        (folder / "secret.txt").write_text(secret)
        (folder / "secret.txt").chmod(0o644)
        code = f"try:\n    got = open({str(folder / 'secret.txt')!r}).read()\nexcept OSError:\n    got = None"
        r = run(sandbox, code, f"assert got == {secret!r}")
    finally:
        shutil.rmtree(folder)
    assert secret not in r.detail
    assert_contained(r)


@pytest.mark.skipif(not ROOT, reason="without root the run has the host user's file permissions")
def test_cannot_write_into_a_private_host_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    code = f"import os\ntry:\n    open({str(target)!r}, 'w').write('x')\nexcept OSError:\n    pass"
    r = run(sandbox, code, f"assert os.path.exists({str(target)!r})")
    assert not target.exists()
    assert_contained(r)


def test_cannot_write_into_a_world_writable_host_directory(request: pytest.FixtureRequest, sandbox: Sandbox) -> None:
    limitation(request, sandbox, ("unshare", "process"), "can write where any user can")
    folder = world_dir("/var/tmp")
    target = folder / "pwned"
    try:
        code = f"import os\ntry:\n    open({str(target)!r}, 'w').write('x')\nexcept OSError:\n    pass"
        r = run(sandbox, code, f"assert os.path.exists({str(target)!r})")
        assert not target.exists()
    finally:
        shutil.rmtree(folder)
    assert_contained(r)


def test_host_environment_is_not_inherited(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = uuid.uuid4().hex
    monkeypatch.setenv("RSFT_SECRET", secret)
    code = (f"import os\nfound = os.environ.get('RSFT_SECRET') == {secret!r}\n"
            f"for pid in (1, os.getppid(), {os.getpid()}):\n    try:\n"
            f"        found = found or {secret!r} in open(f'/proc/{{pid}}/environ').read()\n"
            "    except OSError:\n        pass")
    r = run(sandbox, code, "assert found")
    assert secret not in r.detail
    assert_contained(r)


@pytest.mark.skipif(not ROOT, reason="without root, process mode runs as the host user and could kill it")
def test_cannot_kill_the_host(sandbox: Sandbox) -> None:
    code = (f"import os\nkilled = 0\nfor pid in (os.getppid(), {os.getpid()}):\n    try:\n"  # pid 0 is our own group
            "        if pid > 0:\n            os.kill(pid, 9)\n            killed += 1\n    except OSError:\n        pass")
    r = run(sandbox, code, "assert killed")
    assert_contained(r)  # and this process is still here to check it


@pytest.mark.skipif(not ROOT, reason="without root a setsid'ed daemon is only caught in a pid namespace")
def test_detached_daemon_does_not_outlive_the_run(sandbox: Sandbox) -> None:
    folder = world_dir("/var/tmp")
    marker, tag = folder / "alive", f"rsft-daemon-{uuid.uuid4().hex}"
    code = ("import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv('/bin/sh', ['sh', '-c', 'sleep 1; echo x > {marker}; : {tag}'])\n"
            "    os._exit(0)\nos.wait()")
    try:
        # The daemon's effect would come after the run, so the program's own test cannot see it.
        r = run(sandbox, code, "assert False, 'spawned'")
        time.sleep(1.5)
        assert not marker.exists()
        assert not any(tag in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())
    finally:
        shutil.rmtree(folder)
    assert_contained(r)


def _cmdline(pid: str) -> str:
    try:
        return Path("/proc", pid, "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_segfault_is_a_crash(sandbox: Sandbox) -> None:
    r = run(sandbox, "import ctypes\nctypes.string_at(0)", "assert True")
    assert r.status == "crashed"
    assert_contained(r)


# ---- verdict honesty ----

ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize("exit_code", [
    "import os\nos._exit(0)",
    "import sys\nsys.exit(0)",
    "raise SystemExit(0)",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
])
def test_exiting_before_the_tests_is_not_a_pass(sandbox: Sandbox, exit_code: str) -> None:
    assert_contained(run(sandbox, ADD + exit_code, "assert add(1, 2) == 3"))


TAMPERING = {
    "fake markers on every descriptor": (
        "import os\nfor fd in range(1, 64):\n    for line in ('PASS', 'ok', 'pass 0', 'pass 0 ', '1 pass 0 ', 'done'):\n"
        "        try:\n            os.write(fd, (line + '\\n').encode())\n        except OSError:\n            pass\n"
        "print('PASSED 1/1')"),
    "patched builtins, os and sys": (
        "import builtins, os, sys\nbuiltins.AssertionError = type('Never', (Exception,), {})\n"
        "builtins.exec = builtins.compile = lambda *a, **k: None\n__builtins__['AssertionError'] = None\n"
        "real_write = os.write\nos.write = lambda fd, data: real_write(fd, data.replace(b'fail', b'pass'))\n"
        "os._exit = sys.exit = lambda *a: None"),
    "overwritten harness and result files": (
        "import os, sys\nfor path in ('harness.py', 'results.json', 'verdict', '/tmp/results.json', sys.argv[0]):\n"
        "    try:\n        open(path, 'w').write('PASS')\n    except OSError:\n        pass\n"
        "try:\n    open(os.__file__, 'a').close()\n    stdlib_writable = True\nexcept OSError:\n    stdlib_writable = False"),
    "trace hook that jumps over asserts": (
        "import sys, threading\ndef jump(frame, event, arg):\n"
        "    if frame.f_code.co_filename.startswith('<test') and event == 'line' and frame.f_lineno == 2:\n"
        "        frame.f_lineno = 3\n    return jump\nsys.settrace(jump)\nthreading.settrace(jump)"),
    "atexit handler": (
        "import atexit\natexit.register(lambda: print('all tests passed'))"),
    # Swap the harness's result pipe for our own, read its genuine lines, and send on rewritten ones.
    "hijacked result pipe": (
        "import os, stat, threading, time\n_add = add\ndef add(a, b):\n    time.sleep(0.05)\n    return _add(a, b)\n"
        "def relay(r, out):\n    while chunk := os.read(r, 65536):\n        for line in chunk.split(b'\\n'):\n"
        "            words = line.split(b' ')\n            if len(words) >= 3:\n"
        "                os.write(out, line.replace(b' fail ', b' pass ') + b'\\n')\n"
        "                os.write(out, words[0] + b' pass 0 \\n' + words[0] + b' done -1 \\n')\n"
        "def is_pipe(fd):\n    try:\n        return stat.S_ISFIFO(os.fstat(fd).st_mode)\n    except OSError:\n"
        "        return False\nfor fd in [fd for fd in range(3, 64) if is_pipe(fd)]:\n"
        "    out, (r, w) = os.dup(fd), os.pipe()\n    os.dup2(w, fd)\n"
        "    threading.Thread(target=relay, args=(r, out), daemon=True).start()"),
}


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_tampering_with_the_harness_is_not_a_pass(sandbox: Sandbox, attack: str) -> None:
    wrong = "def add(a, b):\n    return a - b\n"
    r = run(sandbox, wrong + TAMPERING[attack], "x = add(1, 2)\nassert x == 3\nx = 3")
    assert_contained(r)


def test_signals_from_the_program_do_not_reach_the_host_group(sandbox: Sandbox) -> None:
    r = run(sandbox, "import os, signal\nos.killpg(0, signal.SIGKILL)", "assert True")
    assert_contained(r)
