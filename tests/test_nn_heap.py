"""hssalg_nn.keep_freed_memory: glibc keeps large freed blocks for reuse; fit() asks for it."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from hssalg_nn import fit

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="the mallopt settings exist on glibc only")

# Each script ends by printing the page faults of a third 48 MiB allocation, made after two
# allocated, filled and freed ones. 48 MiB is above glibc's largest dynamic mmap threshold
# (32 MiB), so by default every such block is a fresh mapping whose pages all fault: at
# least 24 with 2 MiB huge pages, 12,288 with 4 KiB ones. Kept in the heap, the block
# reuses the pages of the last one and faults at most a few times (the heap's top,
# malloc's bookkeeping).
_MEASURE = """
import resource
import numpy as np

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

n = 6 << 20
for _ in range(2):
    a = np.ones(n)
    del a
f0 = faults()
a = np.ones(n)
print(faults() - f0)
"""

_TINY_FIT = """
import numpy as np
from hssalg_nn import fit
X = np.random.default_rng(0).standard_normal((8, 4))
fit(lambda p, X: X @ p, np.eye(4), X, X + 1.0, epochs=1, progress=False)
"""


def _third_block_faults(prelude, env_value=None):
    env = dict(os.environ)
    env.pop("HSSALG_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["HSSALG_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", prelude + _MEASURE], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@glibc
def test_keep_freed_memory_lets_the_next_block_reuse_the_last_ones_pages():
    assert _third_block_faults("import hssalg_nn\nassert hssalg_nn.keep_freed_memory()\n") <= 8


@glibc
def test_importing_the_package_leaves_malloc_alone():
    assert _third_block_faults("import hssalg_nn\n") >= 20


@glibc
def test_fit_keeps_freed_memory_unless_the_environment_says_0():
    assert _third_block_faults(_TINY_FIT) <= 8
    assert _third_block_faults(_TINY_FIT, "1") <= 8
    assert _third_block_faults(_TINY_FIT, "0") >= 20


def test_invalid_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HSSALG_KEEP_FREED_MEMORY", "yes")
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="HSSALG_KEEP_FREED_MEMORY must be 0 or 1, got 'yes'"):
        fit(lambda p, X: X @ p, np.eye(3), X, X, epochs=1, progress=False)
