"""The child side of `rsft.inputs.sandbox`: runs inside the sandbox, never imported by rsft.

It reads the job (key, code, steps, limits) from stdin, sets the limits, drops to the run's uid,
then runs the candidate and the steps. Only lines signed with the key count; see sandbox.py for
why each step is here. The host reads this file's text and passes it with ``python -I -u -c``.
"""

import builtins
import hashlib
import json
import os
import resource
import sys


def main():
    job = json.loads(sys.stdin.buffer.read())
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0); os.close(null)
    key, fd, steps = bytes.fromhex(job["key"]), job["fd"], job["steps"]
    write, exit_, run, compile_, typename, mac = os.write, os._exit, exec, compile, type, hashlib.blake2b
    settrace, setprofile = sys.settrace, sys.setprofile
    def report(kind, index=-1, message=""):
        text = " ".join(str(message).split())[:300]
        try:
            line = f"{kind} {index} {text}".encode("utf-8", "backslashreplace")
            write(fd, mac(line, key=key, digest_size=16).hexdigest().encode() + b" " + line + b"\n")
        except BaseException:
            exit_(3)
    def describe(e):
        try:
            message = str(e)
            return typename(e).__name__ + (": " + message if message else "")
        except BaseException:
            return "exception"
    if os.getpid() == 1:  # unshare: stay on as the namespace's init, so the program is an ordinary process
        child = os.fork()
        while child:
            pid, status = os.wait()
            if pid == child:
                exit_(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    for name, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value) if name != "RLIMIT_CPU" else (value, value + 1))
    uid = job["uid"]
    if uid is not None:
        os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
            exit_(4)
    report("start")
    fresh = dict(builtins.__dict__)
    namespace = {"__name__": "__solution__", "__builtins__": dict(fresh)}
    try:
        code = compile_(job["code"], "<solution>", "exec")
    except BaseException as e:
        report("syntax", -1, describe(e)); report("done"); exit_(0)
    report("compiled")
    try:
        run(code, namespace)
    except BaseException as e:
        report("raised", -1, describe(e)); report("done"); exit_(0)
    for i, (source, is_test) in enumerate(steps):
        settrace(None); setprofile(None)
        namespace["__builtins__"] = dict(fresh)
        try:
            run(compile_(source, f"<test {i}>", "exec"), namespace)
        except BaseException as e:
            report("fail", i, describe(e))
        else:
            if is_test:
                report("pass", i)
    report("done")
    exit_(0)
if __name__ == "__main__":
    main()
