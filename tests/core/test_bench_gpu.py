"""The GPU benchmark set runs its logic on the CPU at small sizes, with torch and numpy alone
(the GPU machine has no Qt and no platformdirs)."""

import subprocess
import sys

from core.bench import gpu


def test_the_gpu_set_runs_small_on_the_cpu_and_reports_its_targets():
    result = gpu.run("cpu", quick=True, seconds=0.2)
    assert result["lens_s"] > 0 and result["lens"]["max_rel_error"] < 1e-3
    assert result["training_ratio"] > 0
    assert set(result["targets"]) == {"lens_s", "training_ratio"}
    cells = {(row["hidden"], row["batch"]) for row in result["crossover"]}
    assert cells == {(h, b) for h in gpu.QUICK["hidden"] for b in gpu.QUICK["batch"]}
    assert all(row["device_s"] > 0 and row["cpu_s"] > 0 for row in result["crossover"])


def test_the_gpu_set_imports_neither_qt_nor_platformdirs():
    code = ("import sys, core.bench.gpu; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'pyqtgraph', 'shiboken6', 'platformdirs', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
