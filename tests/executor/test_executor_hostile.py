"""A corpus of hostile programs, run as one batch: each gets the right structured result,
and afterwards the pool still answers correctly, a canary file outside the private
directory is intact, and no process is left behind."""
from __future__ import annotations

import os

import pytest

from executor_procs import private_dirs_root, sandbox_children

from azr_jax.executor import FailureKind as K

CANARY_TEXT = "the canary is alive"

# (name, body of f(x) or a whole program containing f, expected failure kind or None for valid)
CORPUS = [
    ("infinite loop", "while True:\n        pass", K.TIMEOUT),
    ("sleep forever", "import time as t\n    t.sleep(1000)", K.TIMEOUT),
    ("ignores every catchable signal", "import signal\n    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM,"
     " signal.SIGXCPU, signal.SIGHUP):\n        signal.signal(s, signal.SIG_IGN)\n    while True:\n        pass", K.TIMEOUT),
    ("slow Counter repr", "import collections, time\n    collections.Counter.__repr__ = lambda s: time.sleep(100)\n"
     "    return collections.Counter('a')", K.TIMEOUT),
    ("memory bomb", "return bytearray(1 << 40)", K.MEMORY),
    # Zero-filled blocks reach the address-space limit without touching pages: fast on a loaded machine.
    ("memory growth", "keep = []\n    while True:\n        keep.append(bytearray(10**8))", K.MEMORY),
    ("fork bomb", "import os\n    while True:\n        os.fork()", K.SANDBOX_VIOLATION),
    ("multiprocessing", "import multiprocessing\n    p = multiprocessing.Process(target=print)\n    p.start()",
     K.SANDBOX_VIOLATION),
    ("os.system", "import os\n    os.system('echo pwned > {canary}')", K.SANDBOX_VIOLATION),
    ("subprocess", "import subprocess\n    subprocess.run(['rm', '-f', '{canary}'])", K.SANDBOX_VIOLATION),
    ("os.exec", "import os\n    os.execv('/bin/sh', ['sh', '-c', 'true'])", K.SANDBOX_VIOLATION),
    ("posix_spawn", "import os\n    os.posix_spawn('/bin/true', ['true'], {{}})", K.SANDBOX_VIOLATION),
    ("dynamic import", "return __import__('sub' + 'process').getoutput('id')", K.SANDBOX_VIOLATION),
    ("exec'd os.system", "exec(\"import os; os.sys\" + \"tem('true')\")", K.SANDBOX_VIOLATION),
    ("write outside", "open('{canary}', 'w').write('pwned')", K.SANDBOX_VIOLATION),
    ("append outside", "open('{canary}', 'a').write('pwned')", K.SANDBOX_VIOLATION),
    ("write via os.open", "import os\n    os.write(os.open('{canary}', os.O_WRONLY | os.O_TRUNC), b'x')",
     K.SANDBOX_VIOLATION),
    ("caught and ignored violation", "try:\n        open('{canary}', 'w')\n    except BaseException:\n"
     "        pass\n    return 1", K.SANDBOX_VIOLATION),
    ("delete outside", "import os\n    os.remove('{canary}')", K.SANDBOX_VIOLATION),
    ("rename outside", "import os\n    os.rename('{canary}', 'stolen')", K.SANDBOX_VIOLATION),
    ("rmtree outside", "import shutil\n    shutil.rmtree('{canary_dir}')", K.SANDBOX_VIOLATION),
    ("chmod outside", "import os\n    os.chmod('{canary}', 0)", K.SANDBOX_VIOLATION),
    ("relative escape", "open('../../escaped.txt', 'w').write('x')", K.SANDBOX_VIOLATION),
    ("symlink escape", "import os\n    os.symlink('{canary}', 'link')\n    open('link', 'w')", K.SANDBOX_VIOLATION),
    ("hard link escape", "import os\n    os.link('{canary}', 'link')", K.SANDBOX_VIOLATION),
    ("dir_fd escape", "import os\n    d = os.open('..', os.O_RDONLY)\n"
     "    os.open('canary.txt', os.O_WRONLY, dir_fd=d)", K.SANDBOX_VIOLATION),
    ("proc mem write", "open('/proc/self/mem', 'wb')", K.SANDBOX_VIOLATION),
    ("socket connect", "import socket\n    socket.create_connection(('127.0.0.1', 22), timeout=1)", K.SANDBOX_VIOLATION),
    ("kill the template", "import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)", K.SANDBOX_VIOLATION),
    ("kill init", "import os\n    os.kill(1, 9)", K.SANDBOX_VIOLATION),
    ("ctypes segfault", "import ctypes\n    ctypes.string_at(0)", K.SANDBOX_VIOLATION),
    ("raise the limits", "import resource\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))", K.SANDBOX_VIOLATION),
    ("gc introspection", "import gc\n    return len(gc.get_objects())", K.SANDBOX_VIOLATION),
    ("second audit hook", "import sys\n    sys.addaudithook(lambda *a: None)", K.SANDBOX_VIOLATION),
    ("re-arm the hook on /", "import sys\n    sys.audit('azr_jax.sandbox.arm', '/')\n"
     "    open('{canary}', 'w').write('pwned')", K.SANDBOX_VIOLATION),
    ("disarm the hook's tables", "import sys\n    s = sys.modules['azr_jax.executor.sandbox']\n"
     "    s._REFUSED_EVENTS, s._PATH_EVENTS, s._violations = frozenset(), {{}}, []\n"
     "    open('{canary}', 'w').write('pwned')", K.SANDBOX_VIOLATION),
    ("patch a function's code", "g = lambda: 0\n    g.__code__ = (lambda: 1).__code__", K.SANDBOX_VIOLATION),
    ("garbage on the result channel", "import os\n    os.write(3, b'x' * 100000)\n    return 1", K.SANDBOX_VIOLATION),
    ("segfault", "import faulthandler\n    faulthandler._sigsegv()", K.CRASHED),
    ("abort", "import os\n    os.abort()", K.CRASHED),
    ("alarm", "import signal, time as t\n    signal.alarm(1)\n    t.sleep(100)", K.CRASHED),
    ("recursion bomb", "return f(x)", K.EXCEPTION),
    ("sys.exit", "import sys\n    sys.exit(0)", K.EXCEPTION),
    ("SystemExit", "raise SystemExit(3)", K.EXCEPTION),
    ("KeyboardInterrupt", "raise KeyboardInterrupt", K.EXCEPTION),
    ("BaseException", "raise BaseException('boom')", K.EXCEPTION),
    ("os._exit", "import os\n    os._exit(0)", K.EXITED),
    ("os._exit 7", "import os\n    os._exit(7)", K.EXITED),
    ("huge print", "print('x' * 10**8)", K.OUTPUT_FLOOD),
    ("print loop", "while True:\n        print('spam' * 1000)", K.OUTPUT_FLOOD),
    ("file flood", "for n in range(10**6):\n        open(str(n), 'w').write('x' * 10**5)", K.SANDBOX_VIOLATION),
    ("huge file", "open('big', 'w').write('x' * 10**8)", K.OUTPUT_FLOOD),
    ("stdin read", "import sys\n    return sys.stdin.read()", None),
    ("hidden input()", "import builtins\n    return getattr(builtins, 'in' + 'put')()", K.EXCEPTION),
    ("threads left running", "import _thread\n    _thread.start_new_thread(lambda: [0 for _ in iter(int, 1)], ())\n"
     "    return 1", None),
    ("third-party import", "import numpy\n    return 1", K.EXCEPTION),
    ("builtins tampering", "import builtins\n    builtins.repr = lambda v: \"'hacked'\"\n    return [1]",
     K.UNREPRESENTABLE),
    ("always-equal output", "class A:\n        def __eq__(self, o):\n            return True\n    return A()",
     K.UNREPRESENTABLE),
    ("lying repr", "class L(list):\n        def __repr__(self):\n            return '[1]'\n    return L([2])",
     K.UNREPRESENTABLE),
    ("slow repr", "import time\n    class S:\n        def __repr__(self):\n            time.sleep(100)\n    return S()",
     K.UNREPRESENTABLE),
    ("files in the private directory are fine", "open('notes.txt', 'w').write('hi')\n"
     "    import os, tempfile\n    with tempfile.TemporaryFile() as t:\n        t.write(b'x')\n"
     "    return open('notes.txt').read() + str(sorted(os.listdir('.')))", None),
]


@pytest.fixture(scope="module")
def corpus_run(executor, tmp_path_factory):
    canary_dir = tmp_path_factory.mktemp("canary")
    canary = canary_dir / "canary.txt"
    canary.write_text(CANARY_TEXT)
    codes = []
    for _, body, _ in CORPUS:
        body = body.format(canary=canary, canary_dir=canary_dir)
        codes.append(f"def f(x):\n    {body}")
    results = executor.validate(codes, ["0"] * len(codes), check_banned=False)
    return dict(zip([name for name, _, _ in CORPUS], results)), canary


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("name, kind", [(name, kind) for name, _, kind in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_program_gets_the_right_result(corpus_run, name, kind):
    result = corpus_run[0][name]
    if kind is None:
        assert result.ok, result.failure
    else:
        assert not result.ok and result.failure.kind is kind, result.failure


def test_after_the_corpus_the_host_is_intact_and_the_pool_still_works(corpus_run, executor):
    _, canary = corpus_run
    assert canary.read_text() == CANARY_TEXT
    assert sorted(os.listdir(canary.parent)) == ["canary.txt"]
    assert sandbox_children(executor.template_pid) == []
    assert os.listdir(private_dirs_root(executor)) == []   # every private directory was removed
    [result] = executor.validate(["def f(x):\n    return sorted(x)"], ["[3, 1, 2]"])
    assert result.ok and result.output == "[1, 2, 3]"
    assert sandbox_children(executor.template_pid) == []
