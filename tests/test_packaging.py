"""The wheel ships the top-level ``backends/`` folder as ``polyloss.backends``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_with_polyloss_backends(tmp_path):
    wheels, source = tmp_path / "wheels", tmp_path / "source"
    # build from a copy, so that setuptools' build/ and egg-info never land in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "polyloss", "backends"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if (ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("polyloss-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", purelib, str(wheel)], check=True)
    # NumPy and array-api-compat come from this environment, after the venv's own site-packages
    Path(purelib, "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import polyloss, polyloss.backends, numpy as np;"
        "from polyloss.backends import numpy as adapter;"
        "print(polyloss.__file__); print(polyloss.backends.__file__);"
        "print(polyloss.multilabel_crossentropy(np.zeros((1, 2)), np.array([[True, False]]))[0])"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    polyloss_file, backends_file, value = done.stdout.split()
    assert polyloss_file.startswith(purelib) and backends_file.startswith(purelib)
    assert backends_file.endswith(os.path.join("polyloss", "backends", "__init__.py"))
    assert float(value) == pytest.approx(2 * 0.6931471805599453)
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True,
                           text=True, check=True).stdout
    for module in ("numpy", "torch", "jax", "tensorflow", "array_api_strict", "_tensorflow_namespace", "cupy"):
        assert f"polyloss/backends/{module}.py" in names
    for module in ("torch/__init__", "torch/metrics", "keras/__init__", "keras/metrics", "keras/layers"):
        assert f"polyloss/{module}.py" in names


FRAMEWORKS = ("torch", "torchmetrics", "keras", "jax", "tensorflow", "dask", "array_api_strict")


@pytest.mark.slow
def test_importing_polyloss_imports_no_framework_until_a_wrapper_is_imported():
    """``import polyloss`` (and its metrics, reference and conformance registry) imports no framework;
    nor does ``import polyloss.torch`` (or its ``.metrics``) until a class is used: then torch (and
    torchmetrics for a metric's class)."""
    from helpers import run_python

    code = f"""
    import sys
    FRAMEWORKS = {FRAMEWORKS!r}
    def loaded():
        return sorted(m for m in FRAMEWORKS if m in sys.modules)
    import polyloss, polyloss.metrics, polyloss.reference
    from polyloss.conformance import registry
    registry.cases_for()
    print("core", loaded())
    import polyloss.torch
    polyloss.torch.metrics
    print("imported", loaded())
    polyloss.torch.MultilabelCrossEntropy
    print("torch", loaded())
    polyloss.torch.metrics.MultilabelF1
    print("torchmetrics", loaded())
    """
    lines = dict(line.split(" ", 1) for line in run_python(code=code).stdout.strip().splitlines())
    assert lines["core"] == "[]"
    assert lines["imported"] == "[]"
    assert lines["torch"] == "['torch']"
    assert lines["torchmetrics"] == "['torch', 'torchmetrics']"
