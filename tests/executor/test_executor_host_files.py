"""Programs cannot see the host's files or the trainer's environment (rootfs.py), and where
that cannot be guaranteed the executor refuses to start unless the user opts out."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from azr_jax.errors import ExecutorError
from azr_jax.executor import Executor

SECRET = "azr-host-secret-3f1c"

# Each reads the planted file at {path} (or lists its folder {folder}) a different way; every
# one must fail to find it. A return value containing SECRET, or the file's name, is a leak.
# Listings keep only the planted names: a full listing of a deep folder outgrows max_output_chars.
READERS = {
    "open": "return open({path!r}).read()",
    "pathlib": "import pathlib\n    return pathlib.Path({path!r}).read_text()",
    "io": "import io\n    return io.open({path!r}).read()",
    "codecs": "import codecs\n    return codecs.open({path!r}).read()",
    "linecache": "import linecache\n    return ''.join(linecache.getlines({path!r}))",
    "fileinput": "import fileinput\n    return ''.join(fileinput.input({path!r}))",
    "os.open": "import os\n    return os.read(os.open({path!r}, os.O_RDONLY), 100).decode()",
    "listdir": "import os\n    return [n for n in os.listdir({folder!r}) if 'secret' in n]",
    "glob": "import glob\n    return glob.glob({folder!r} + '/*secret*') + glob.glob({folder!r} + '/.*secret*')",
    "scandir": "import os\n    return [e.name for e in os.scandir({folder!r}) if 'secret' in e.name]",
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A secret in a host temporary folder, in the home directory and in the working directory."""
    places = {"tmp": tmp_path_factory.mktemp("host") / "secret.txt",
              "home": Path.home() / f".{SECRET}.txt",
              "cwd": Path.cwd() / f".{SECRET}.txt"}
    for path in places.values():
        path.write_text(SECRET)
    yield places
    for path in places.values():
        path.unlink()


def _programs(planted):
    names, codes = [], []
    for place, path in planted.items():
        for reader, body in READERS.items():
            names.append(f"{place}/{reader}")
            codes.append("def f(x):\n    " + body.format(path=str(path), folder=str(path.parent)))
    return names, codes


def _leaks(executor, planted) -> list[str]:
    names, codes = _programs(planted)
    results = executor.validate(codes, ["0"] * len(codes), check_banned=False)
    return [name for name, r in zip(names, results)
            if r.ok and (SECRET in r.output or "secret.txt" in r.output)]


def test_host_files_are_invisible(executor, planted):
    if not executor.private_root:
        pytest.skip("this machine permits no namespaces (the refusal is tested below)")
    assert _leaks(executor, planted) == []


def test_the_readers_do_see_host_files_without_the_private_root(planted):
    """The same programs do leak without the private root: the test above can fail."""
    with Executor(workers=2, timeout_s=2, namespaces=False, require_private_root=False) as executor:
        assert not executor.private_root
        assert set(_leaks(executor, planted)) == {f"{p}/{r}" for p in planted for r in READERS}


def test_only_the_minimal_view_exists(executor):
    if not executor.private_root:
        pytest.skip("this machine permits no namespaces")
    codes = ["import os\ndef f(x):\n    return sorted(os.listdir('/'))",
             # A process listed may exit before its stat is read (an earlier run being reaped).
             "import os\ndef parent(p):\n    try:\n        return open(f'/proc/{p}/stat').read().split()[3]\n"
             "    except OSError:\n        return '1'\n"
             "def f(x):\n    return all(p == '1' or parent(p) == '1' for p in os.listdir('/proc') if p.isdigit())",
             "import os\ndef f(x):\n    return sorted(os.listdir('/dev'))",
             "import os\ndef f(x):\n    return os.path.exists(os.path.join(os.path.dirname(os.__file__), 'site-packages', 'pip'))"]
    top, procs, dev, packages = executor.validate(codes, ["0"] * len(codes), check_banned=False)
    listed = eval(top.output)
    assert not {"tmp", "home", "work", "var", "srv", "opt", "mnt"} & set(listed)
    assert procs.output == "True"          # the template and this run, nobody else
    assert eval(dev.output) == ["null", "random", "urandom", "zero"]
    assert packages.output == "False"
    assert not set(listed) - {"usr", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "azr-work",
                              ".old-root", *Path(os.__file__).parts[1:2]}


def test_the_trainers_environment_does_not_reach_programs(monkeypatch):
    monkeypatch.setenv("AZR_TEST_API_KEY", SECRET)
    codes = ["def f(x):\n    return open('/proc/self/environ').read()",
             "def f(x):\n    return open(f'/proc/{__import__(\"os\").getppid()}/environ').read()",
             "import os\ndef f(x):\n    return dict(os.environ)"]
    for kwargs in ({}, {"namespaces": False, "require_private_root": False}):
        try:
            executor = Executor(workers=1, timeout_s=2, **kwargs)
        except ExecutorError:
            continue   # no namespaces here: the refusal is tested below
        with executor:
            results = executor.validate(codes, ["0"] * len(codes), check_banned=False)
        assert all(r.ok for r in results), [r.failure for r in results]
        assert not any(SECRET in r.output or "AZR_TEST_API_KEY" in r.output for r in results)


def test_without_the_private_root_the_executor_refuses_unless_told():
    with pytest.raises(ExecutorError, match=r"cannot hide the host's files.*require_private_root=false"):
        Executor(workers=1, namespaces=False)
