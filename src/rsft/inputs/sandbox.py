"""Run one untrusted Python program against its tests, in the strongest sandbox the machine offers.

`Sandbox.run(code, steps)` starts a fresh child, runs the candidate `code` and then each `Step`
(test or setup) in that interpreter, and returns a `RunResult`. Nothing the program does makes it
raise; a sandbox that cannot start is ``status="error"``.

Every mode gives every run:
- its own process group and session, SIGKILLed at the wall-clock timeout and after a normal exit;
- rlimits: CPU seconds, address space (``memory_mb`` per process), file size (``max_output_bytes``
  per file; captured stdout+stderr is such a file), 256 open files, no core dumps;
- as root: a fresh random unprivileged uid/gid (no groups). RLIMIT_NPROC then holds (the kernel
  exempts root) and counts this run only, the program cannot signal host processes, and after the
  run ``kill -KILL -1`` as that uid ends every process it left, setsid'ed daemons included;
- an environment of PATH, LANG and HOME only, stdin at EOF, ``python -I -u``;
- a verdict it cannot fake by exiting, printing, patching or hijacking the result pipe. The
  harness reports on a pipe of its own, and signs each line with keyed BLAKE2b under a per-run key
  that it read from stdin (not argv or env) before the candidate ran and never writes anywhere. A
  program that swaps the pipe for its own (dup2) reads genuine lines but cannot sign a new one.
  A test passes only on its own signed "pass" line; exit codes, output and files are never read
  for the verdict. The harness holds its own references to what it calls (the MAC is a C type),
  gives each test fresh builtins and clears trace/profile hooks first. A top-level exception in
  the candidate, SystemExit included, fails every test, as in one-script harnesses.

| protection                                   | bwrap | unshare | process |
|----------------------------------------------|-------|---------|---------|
| timeout and exit kill every descendant       | yes   | yes     | as root (by uid); else the process group only |
| CPU, memory, file-size rlimits               | yes   | yes     | yes     |
| fork bomb bounded (RLIMIT_NPROC)             | yes   | yes     | as root only |
| cannot signal or see host processes          | yes   | yes     | signal: as root only; see: no |
| no network, not even host loopback           | yes   | yes     | no      |
| host files invisible (interpreter read-only) | yes   | no      | no      |
| cannot write to the host filesystem          | yes   | no      | no      |
| total disk use bounded                       | yes (tmpfs) | no | no   |

- **bwrap**: new pid, net, ipc, uts, cgroup namespaces (plus a user namespace when not root); an
  empty read-only root with read-only binds of /usr, /bin and /lib* as on the host, the
  interpreter's prefixes, /etc/ld.so.cache and /etc/localtime; fresh /proc, minimal /dev;
  size-capped tmpfs (``disk_mb`` each) at /tmp, holding the work directory, and /dev/shm; all
  capabilities dropped (as root, SETUID/SETGID survive only until the harness takes the run's uid);
  ``--die-with-parent --new-session --clearenv``. The namespace dies with its init.
- **unshare**: new pid, net, ipc, uts, mount namespaces and a private /proc; the harness stays on
  as the namespace's init. The filesystem is the host's, seen with the run uid's rights: it reads
  world-readable files, writes world-writable directories (/tmp, /var/tmp, /dev/shm) and can
  leave files there.
- **process** (the fallback) does NOT protect against: network use (local services, the
  internet), reading whatever an unprivileged user can read, writing and leaving files in
  world-writable directories, filling the disk with many files (each capped, none counted), or
  seeing host processes. Without root it also has no process-count limit, setsid'ed daemons
  outlive the run, and the program can signal and read everything the host user can.

``mode="auto"`` probes bwrap, unshare, process, in that order (once per interpreter, cached) and
takes the first that runs a real program. Outside bwrap the program runs as an unprivileged uid,
so the interpreter's standard library must be world-readable; one under /root (pyenv) is not, and
those modes then report themselves unavailable (pass ``python=``, e.g. /usr/bin/python3).
Nowhere provided: a memory limit for the run as a whole (worst case ``max_procs x memory_mb``),
seccomp, or a defence against a candidate that deliberately inspects the interpreter it shares
with the harness (frames, gc, ctypes) to find the key or skip an assert, or that returns objects
whose ``__eq__`` always says True. The test suite runs as root here; the paths without root (user
namespaces, no uid switch) were checked by hand as an unprivileged user.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rsft.core.errors import RsftError

Status = Literal["ok", "failed", "timeout", "crashed", "error"]
MODES = ("bwrap", "unshare", "process")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
BOX_WORKDIR = "/tmp/work"  # the work directory inside bwrap, on its size-capped /tmp
UID_BASE, UID_SPAN = 1_900_000_000, 100_000_000  # random per-run uids, far from real accounts


class SandboxUnavailable(RsftError, RuntimeError):
    """The requested sandbox mode cannot run a program on this machine (a user-fixable setting: one line)."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # wall-clock seconds for the whole run (program and all tests)
    memory_mb: int = 512  # RLIMIT_AS, per process
    max_procs: int = 16  # RLIMIT_NPROC for the run's uid: processes plus threads
    max_output_bytes: int = 1 << 20  # RLIMIT_FSIZE: caps captured stdout+stderr and every file written
    disk_mb: int = 64  # bwrap only: size of each tmpfs, /tmp (holding the work directory) and /dev/shm


@dataclass(frozen=True)
class Step:
    """One piece of test source run after the candidate: a test (counted) or setup (not counted)."""

    source: str
    is_test: bool = True


@dataclass(frozen=True)
class RunResult:
    passed: int
    total: int
    status: Status  # ok: all tests passed | failed | timeout | crashed: died early | error: sandbox failure
    compiled: bool  # the candidate's code compiled
    detail: str  # first failures, how the run ended, and the tail of its output
    seconds: float
    mode: str
    uid: int | None = None  # the run's unprivileged uid (None when the host is not root)
    workdir: str | None = None  # the host work directory, removed before returning (None in bwrap)
    output: str = ""  # the end of what the program printed (stdout and stderr), up to `keep_output` bytes


# The child side lives in sandbox_harness.py; it is passed to the interpreter as source text.
HARNESS = (Path(__file__).with_name("sandbox_harness.py")).read_text()


class Sandbox:
    """Runs programs in one mode; `mode="auto"` resolves to the strongest mode that works here."""

    def __init__(self, mode: str = "auto", limits: Limits | None = None, python: str | None = None):
        if mode not in ("auto", *MODES):
            raise ValueError(f"unknown sandbox mode {mode!r}, expected auto, {', '.join(MODES)}")
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.mode = resolve_mode(mode, self.python)

    def run(self, code: str, steps: Sequence[Step] = (), keep_output: int = 600) -> RunResult:
        """Run `code` then `steps`; `keep_output` bytes of its output are kept (a tool's observation)."""
        return _run(self.mode, self.python, self.limits, code, list(steps), keep_output)


_probe_lock = threading.Lock()
_probed: dict[tuple[str, str], str | None] = {}  # (mode, python) -> None if it works, else why not


def probe(mode: str, python: str) -> str | None:
    """None if `mode` runs a real program (one importing a module after the uid switch), else why not."""
    key = (mode, python)
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe(mode, python)
        return _probed[key]


def _probe(mode: str, python: str) -> str | None:
    tool = {"bwrap": "bwrap", "unshare": "unshare"}.get(mode)
    if tool and not shutil.which(tool):
        return f"{tool} is not installed"
    try:
        r = _run(mode, python, Limits(timeout=20), "import colorsys\nx = 1", [Step("assert x == 1")])
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if r.status == "ok":
        return None
    if "ModuleNotFoundError" in r.detail or "PermissionError" in r.detail:
        return (f"{python}'s standard library is not readable by an unprivileged uid ({r.detail[:200]}); "
                "pass python= a system interpreter such as /usr/bin/python3, or use bwrap")
    return f"probe run ended {r.status}: {r.detail[:300]}"


def resolve_mode(mode: str, python: str) -> str:
    """The mode to use: `mode` itself if it works here, or for auto the first of bwrap, unshare, process."""
    reasons = []
    for m in MODES if mode == "auto" else (mode,):
        why = probe(m, python)
        if why is None:
            return m
        reasons.append(f"{m}: {why}")
    raise SandboxUnavailable("no sandbox mode works here: " + "; ".join(reasons))


def _python_prefixes(python: str) -> list[str]:
    """Directories the interpreter needs, outside /usr: its prefixes and the directory of its binary."""
    out = subprocess.run([python, "-I", "-S", "-c", "import sys, json; print(json.dumps([sys.prefix, "
                          "sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"],
                         capture_output=True, text=True, timeout=30, check=True, env=ENV)
    dirs = {os.path.abspath(p) for p in json.loads(out.stdout)}
    dirs |= {os.path.dirname(os.path.abspath(python)), os.path.dirname(os.path.realpath(python))}
    dirs = {d for d in dirs if d not in ("/", "/usr") and not d.startswith("/usr/")}
    return sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs))  # outermost only


_prefix_cache: dict[str, list[str]] = {}


def _bwrap_command(python: str, limits: Limits, as_root: bool) -> list[str]:
    if python not in _prefix_cache:
        _prefix_cache[python] = _python_prefixes(python)
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
    # As root a user namespace would map the sandbox back to uid 0, which RLIMIT_NPROC ignores; so no
    # user namespace, and the harness keeps only SETUID/SETGID until it switches to the run's uid.
    cmd += (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if as_root else ["--unshare-all"])
    for k, v in {**ENV, "HOME": BOX_WORKDIR}.items():
        cmd += ["--setenv", k, v]
    cmd += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        cmd += ["--ro-bind-try", f, f]
    cmd += ["--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp",
            "--perms", "0777", "--dir", BOX_WORKDIR]
    for prefix in _prefix_cache[python]:
        parents = [str(p) for p in reversed(Path(prefix).parents) if str(p) != "/"]
        for parent in parents:  # bwrap would copy the host's modes, e.g. /root's 0700
            cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.disk_mb << 20),
            "--tmpfs", "/dev/shm", "--remount-ro", "/", "--chdir", BOX_WORKDIR, "--"]
    return cmd


def _command(mode: str, python: str, limits: Limits, as_root: bool) -> list[str]:
    tail = [python, "-I", "-u", "-c", HARNESS]  # -u: output reaches the capped file as it is written
    if mode == "bwrap":
        return _bwrap_command(python, limits, as_root) + tail
    if mode == "unshare":
        user = [] if as_root else ["--user", "--map-root-user"]
        return ["unshare", *user, "--fork", "--pid", "--kill-child", "--mount-proc", "--net", "--ipc",
                "--uts", "--", *tail]
    return tail


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _allocate_uid() -> int:
    with _uid_lock:
        while (uid := UID_BASE + secrets.randbelow(UID_SPAN)) in _uids_in_use:
            pass
        _uids_in_use.add(uid)
        return uid


def live_pids(uid: int) -> list[int]:
    """Processes (not zombies) whose real uid is `uid`."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            out.append(int(entry.name))
    return out


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid`: ``kill -1`` run as that uid reaches exactly those (and not itself)."""
    kill = shutil.which("kill") or "/bin/kill"
    for _ in range(100):
        subprocess.run([kill, "-KILL", "-1"], user=uid, group=uid, extra_groups=[], env=ENV, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if not live_pids(uid):
            return
        time.sleep(0.01)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: a zombie leader keeps its process group id
    reserved, so the later killpg cannot hit an unrelated group that reused the number."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signed(line: bytes, key: bytes) -> str | None:
    """The payload of a line signed with `key` (``<mac> <payload>``), or None."""
    tag, _, payload = line.partition(b" ")
    if len(tag) != 32 or len(line) > 1024:
        return None
    expected = hashlib.blake2b(payload, key=key, digest_size=16).hexdigest().encode()
    return payload.decode("utf-8", "replace") if hmac.compare_digest(tag, expected) else None


def _collect(proc: subprocess.Popen, fd: int, key: bytes, deadline: float, max_lines: int) -> tuple[list[str], bool]:
    """Signed lines from the harness's pipe until the child exits or the deadline; True if timed out.

    Memory stays bounded whatever the program writes to the pipe: partial lines are capped and only
    correctly signed lines are kept.
    """
    lines: list[str] = []
    pending = b""
    open_ = True
    while True:
        exited = _exited(proc.pid)
        now = time.monotonic()
        if now >= deadline:
            return lines, not exited
        if not open_:  # every writer closed the pipe; wait for the exit itself
            if exited:
                return lines, False
            time.sleep(0.01)
            continue
        if not select.select([fd], [], [], 0 if exited else min(0.05, deadline - now))[0]:
            if exited:  # exited and nothing left to read (a daemon may still hold the pipe open)
                return lines, False
            continue
        chunk = os.read(fd, 1 << 16)
        open_ = bool(chunk)
        *complete, pending = (pending + chunk).split(b"\n")
        pending = pending[-4096:]
        lines += [p for p in (_signed(c, key) for c in complete) if p is not None]
        del lines[max_lines:]


def _run(mode: str, python: str, limits: Limits, code: str, steps: list[Step], keep_output: int = 600) -> RunResult:
    start = time.monotonic()
    as_root = os.geteuid() == 0
    uid = _allocate_uid() if as_root else None
    key = secrets.token_bytes(32)
    workdir = None if mode == "bwrap" else tempfile.mkdtemp(prefix="rsft-sandbox-")
    if workdir and uid is not None:
        os.chown(workdir, uid, uid)
    rlimits = {"RLIMIT_CPU": int(limits.timeout) + 1, "RLIMIT_AS": limits.memory_mb << 20,
               "RLIMIT_FSIZE": limits.max_output_bytes, "RLIMIT_NOFILE": 256, "RLIMIT_CORE": 0}
    if uid is not None or mode != "process":  # without a uid of its own the count would include the host's
        rlimits["RLIMIT_NPROC"] = limits.max_procs
    read_fd, write_fd = os.pipe()
    job = {"key": key.hex(), "fd": write_fd, "uid": uid, "code": code, "rlimits": rlimits,
           "steps": [[s.source, s.is_test] for s in steps]}
    proc = None
    lines: list[str] = []
    timed_out = False
    with tempfile.TemporaryFile() as output:
        try:
            try:
                proc = subprocess.Popen(_command(mode, python, limits, as_root), stdin=subprocess.PIPE,
                                        stdout=output, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                        cwd=workdir or "/", env={**ENV, "HOME": workdir or BOX_WORKDIR},
                                        start_new_session=True)
            finally:
                os.close(write_fd)
            threading.Thread(target=_feed, args=(proc.stdin, json.dumps(job).encode()), daemon=True).start()
            lines, timed_out = _collect(proc, read_fd, key, start + limits.timeout, 4 * len(steps) + 16)
        except (OSError, subprocess.SubprocessError) as e:
            lines, timed_out = [], False
            output.write(f"cannot start the sandbox: {e}".encode())
        finally:
            os.close(read_fd)
            if proc is not None:
                try:
                    os.killpg(proc.pid, 9)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            if uid is not None:
                _kill_uid(uid)
                with _uid_lock:
                    _uids_in_use.discard(uid)
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
                if os.path.exists(workdir):  # e.g. nesting deeper than rmtree's recursion
                    subprocess.run(["rm", "-rf", "--", workdir], check=False)
        output.seek(max(0, output.seek(0, 2) - max(keep_output, 600)))
        kept = output.read()
        tail = kept[-600:].decode("utf-8", "replace")
    returncode = proc.returncode if proc is not None else None
    result = _verdict(lines, steps, timed_out, returncode, tail, limits, mode, uid, workdir, time.monotonic() - start)
    return dataclasses.replace(result, output=kept[-keep_output:].decode("utf-8", "replace") if keep_output else "")


def _feed(stdin, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the child died before reading its job
        with stdin:
            stdin.write(data)


def _verdict(lines: list[str], steps: list[Step], timed_out: bool, returncode: int | None, tail: str,
             limits: Limits, mode: str, uid: int | None, workdir: str | None, seconds: float) -> RunResult:
    """Count passes from the signed lines: a test passes only with a "pass" line and no "fail" line."""
    events = [e for e in (line.split(" ", 2) for line in lines) if len(e) == 3 and e[1].lstrip("-").isdigit()]
    kinds = {e[0] for e in events}
    passes = {int(e[1]) for e in events if e[0] == "pass"}
    fails = {int(e[1]): e[2] for e in events if e[0] == "fail"}
    tests = [i for i, s in enumerate(steps) if s.is_test]
    passed = sum(1 for i in tests if i in passes and i not in fails)
    notes = [f"{kind}: {e[2]}" for e in events for kind in ("syntax", "raised") if e[0] == kind]
    notes += [f"step {i}: {msg}" for i, msg in sorted(fails.items())[:3]]
    if "start" not in kinds:
        status: Status = "error"
        notes.insert(0, f"the sandbox did not start (exit status {returncode})")
    elif "done" in kinds:
        status = "ok" if passed == len(tests) else "failed"
    elif timed_out:
        status = "timeout"
        notes.insert(0, f"timed out after {limits.timeout:g}s")
    else:
        status = "crashed"
        notes.insert(0, f"ended before finishing its tests (exit status {returncode})")
    if tail.strip():
        notes.append("output: " + tail.strip()[-400:])
    return RunResult(passed=passed, total=len(tests), status=status, compiled="compiled" in kinds,
                     detail="\n".join(notes)[:2000], seconds=round(seconds, 3), mode=mode, uid=uid,
                     workdir=workdir)
