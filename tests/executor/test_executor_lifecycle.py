"""Start, stop, crash and misuse: no process is ever left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from executor_procs import alive, descendants, sandbox_children, template_interpreter

from azr_jax.errors import ConfigError, ExecutorError
from azr_jax.executor import Executor, FailureKind
from azr_jax.executor.rootfs import WORKSPACE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLEEPER = "import select\ndef f(x):\n    select.select([], [], [], 60)"   # sleeps, no banned import


def _wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_close_is_idempotent_and_leaves_no_process():
    executor = Executor(workers=1, timeout_s=1)
    pid = executor.template_pid
    processes = [pid, *descendants(pid)]
    assert executor.validate(["def f(x):\n    return x"], ["1"])[0].ok
    executor.close()
    executor.close()
    assert not any(alive(p) for p in processes)
    assert executor.template_pid is None
    with pytest.raises(ExecutorError):
        executor.validate(["def f(x):\n    return x"], ["1"])


def test_close_while_a_batch_runs_in_another_thread():
    executor = Executor(workers=1, timeout_s=30)
    raised = []

    def run_batch():
        try:
            executor.validate([SLEEPER], ["1"])
        except ExecutorError as exc:
            raised.append(exc)

    worker = threading.Thread(target=run_batch)
    worker.start()
    assert _wait_until(lambda: sandbox_children(executor.template_pid) != [])
    processes = [executor.template_pid, *descendants(executor.template_pid)]
    start = time.monotonic()
    executor.close()
    worker.join(timeout=10)
    assert time.monotonic() - start < 5 and raised
    assert _wait_until(lambda: not any(alive(p) for p in processes))


def test_a_killed_caller_leaves_no_process(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from azr_jax.executor import Executor
        executor = Executor(workers=2, timeout_s=60)
        print(executor.template_pid, executor._template.base_dir, flush=True)
        executor.validate([{SLEEPER!r}] * 2, ["1", "2"])
    """)
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid_text, base_dir = caller.stdout.readline().split()
    template_pid = int(pid_text)
    assert _wait_until(lambda: len(sandbox_children(template_pid)) == 2)
    processes = [template_pid, *descendants(template_pid)]
    caller.kill()
    caller.wait()
    assert _wait_until(lambda: not any(alive(p) for p in processes)), [p for p in processes if alive(p)]
    assert _wait_until(lambda: not os.path.exists(base_dir))    # the private directories went too


def test_a_killed_template_is_replaced():
    with Executor(workers=1, timeout_s=5) as executor:
        os.kill(template_interpreter(executor.template_pid), signal.SIGKILL)
        [result] = executor.validate(["def f(x):\n    return x + 1"], ["1"])
        assert result.ok and result.output == "2"


def test_without_namespaces_the_in_process_layers_still_hold(tmp_path):
    outside = tmp_path / "outside.txt"
    with Executor(workers=2, timeout_s=2, namespaces=False, require_private_root=False) as executor:
        assert not executor.namespaces
        results = executor.validate(
            ["def f(x):\n    return x * 3", f"def f(x):\n    open({str(outside)!r}, 'w')",
             "import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', 22))",
             "import os\ndef f(x):\n    os.fork()", "def f(x):\n    while True:\n        pass"], ["2"] * 5)
        assert results[0].output == "6"
        assert [r.failure.kind for r in results[1:]] == [FailureKind.SANDBOX_VIOLATION] * 3 + [FailureKind.TIMEOUT]
        assert sandbox_children(executor.template_pid) == []
    assert not outside.exists()


def test_namespaces_when_the_os_permits(executor):
    if not executor.namespaces:
        pytest.skip("this machine permits no namespaces (the layers above are tested without them)")
    template = template_interpreter(executor.template_pid)
    assert os.readlink(f"/proc/{template}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{template}/ns/pid_for_children") != os.readlink("/proc/self/ns/pid")


def test_concurrent_calls_from_threads(executor):
    outputs = {}

    def work(n):
        outputs[n] = [r.output for r in executor.validate([f"def f(x):\n    return x * {n}"] * 5, ["2"] * 5)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {n: [str(2 * n)] * 5 for n in range(4)}


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"timeout_s": 0}, {"timeout_s": float("inf")},
                                    {"memory_mb": 16}, {"max_output_chars": 0}, {"banned_imports": "random"},
                                    {"banned_imports": ["os..path"]}, {"max_file_mb": 0}])
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ConfigError):
        Executor(**kwargs)


def test_children_die_with_a_killed_template_without_namespaces():
    """The lifeline alone (no PID namespace) takes the children down with the template."""
    executor = Executor(workers=2, timeout_s=30, namespaces=False, require_private_root=False)
    worker = threading.Thread(target=lambda: pytest.raises(ExecutorError, executor.validate, [SLEEPER] * 2, ["1", "2"]))
    worker.start()
    assert _wait_until(lambda: len(sandbox_children(executor.template_pid)) == 2)
    children = sandbox_children(executor.template_pid)
    executor.close()     # kills the template with SIGKILL: it gets no chance to kill its children
    worker.join(timeout=10)
    assert _wait_until(lambda: not any(alive(p) for p in children))


def test_the_workspace_is_a_bounded_tmpfs_in_the_namespace():
    with Executor(workers=1, timeout_s=5, max_file_mb=1) as executor:
        if not executor.namespaces:
            pytest.skip("this machine permits no namespaces")
        template = template_interpreter(executor.template_pid)
        with open(f"/proc/{template}/mounts") as mounts:
            assert any(line.split()[1] == WORKSPACE and line.startswith("tmpfs ") for line in mounts)
        # 16 files' worth per worker: 40 files of 1 MB cannot all fit (and stay under the quota)
        [result] = executor.validate(["def f(x):\n    for n in range(40):\n        open(str(n), 'w').write('x' * 10**6)"],
                                     ["0"])
        assert result.failure.kind is FailureKind.OUTPUT_FLOOD
        [result] = executor.validate(["def f(x):\n    open('a', 'w').write('x' * 10**6)\n    return 1"], ["0"])
        assert result.ok   # the space came back with the previous run's directory
