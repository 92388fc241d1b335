"""The walls of the house are checked, not assumed (docs/design.md, "Data flows one way").

- The import-linter contracts in ``pyproject.toml`` (``.ci/run`` runs them on the source tree): each
  one holds on this tree, and each one fails on a copy of the tree with one violating import added.
- No module reaches another module's private names (``from polyloss.x import _y`` or ``x._y``):
  import-linter sees modules, not names, so this is an AST check of every module of the tree.
"""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}

pytest.importorskip("importlinter", reason="import-linter (a test extra) not installed")


def _lint_imports(tree: pathlib.Path, *contracts: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the source tree ``tree`` (``polyloss`` and ``backends`` as root packages)."""
    lint = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    argv = [lint, "--no-cache", *(arg for c in contracts for arg in ("--contract", c))]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_every_contract_holds_on_this_tree():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in done.stdout


# one violating import per contract: (file, line added at its end)
VIOLATIONS = {
    "backends-below-core": ("backends/numpy.py", "from polyloss import _ops  # noqa"),
    "no-framework-in-core": ("polyloss/_ops.py", "import torch  # noqa"),
    "reference-apart-from-core": ("polyloss/reference/multilabel.py", "from polyloss import _ops  # noqa"),
    "core-apart-from-reference": ("polyloss/losses/multilabel.py", "from polyloss import reference  # noqa"),
    "loss-families-apart": ("polyloss/losses/contrastive.py", "from polyloss.losses import classification  # noqa"),
    "metric-families-apart": ("polyloss/metrics/entities.py", "from polyloss.metrics import correlation  # noqa"),
}


def test_every_contract_has_a_violation_test():
    assert set(VIOLATIONS) == set(CONTRACTS)


@pytest.mark.slow
@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_each_contract_fails_when_broken(tmp_path, contract):
    for name in ("pyproject.toml", "polyloss", "backends"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    path, line = VIOLATIONS[contract]
    with open(tmp_path / path, "a") as f:
        f.write(f"\n{line}\n")
    done = _lint_imports(tmp_path, contract)
    assert done.returncode != 0, done.stdout
    assert f"{CONTRACTS[contract]} BROKEN" in " ".join(done.stdout.split()), done.stdout  # the report wraps lines


# --------------------------------------------------------------------------------------------
# private names
# --------------------------------------------------------------------------------------------
def private_name_uses(source: str, module: str) -> list[str]:
    """``"line: what"`` for every use, in the module ``module``, of a private name (``_x``, not
    ``__x__``) of another polyloss module: ``from polyloss.a import _x`` and ``a._x`` where ``a`` was
    imported as a polyloss module. A private *module* (``polyloss._ops``) may be imported; its
    non-underscore names are its interface."""
    tree = ast.parse(source)
    modules = {}  # local name -> module path, for `from polyloss import _ops` / `import polyloss.x as y`
    problems = []

    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and (node.module.split(".")[0] in ("polyloss", "backends") or node.level)
        ):
            base = node.module if not node.level else f"<relative>.{node.module or ''}"
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if private(alias.name) and not _is_module(target):
                    problems.append(f"{node.lineno}: from {base} import {alias.name}")
                modules[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "polyloss":
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and private(node.attr)
            and not _is_module(f"{modules[node.value.id]}.{node.attr}")
            and modules[node.value.id] != module
        ):
            problems.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return problems


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of the source tree (``polyloss.x._y``)."""
    parts = dotted.replace("<relative>.", "backends.").split(".")
    if parts[0] == "polyloss" and len(parts) > 1 and parts[1] == "backends":
        parts = parts[1:]
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules():
    for path in sorted([*ROOT.joinpath("polyloss").rglob("*.py"), *ROOT.joinpath("backends").rglob("*.py")]):
        yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_module_uses_another_modules_private_names():
    problems = []
    for path, module in _modules():
        problems += [f"{path.relative_to(ROOT)}:{p}" for p in private_name_uses(path.read_text(), module)]
    assert not problems, "private names used outside their module:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        "from polyloss.losses.classification import _Softmax\n",
        "from polyloss.losses import classification\nclassification._pick(1, 2, 3)\n",
        "import polyloss.losses.multilabel as ml\nml._ZLPR\n",
    ],
)
def test_the_private_name_check_catches_a_violation(source):
    assert private_name_uses(source, "polyloss.losses.contrastive")


@pytest.mark.parametrize(
    "source",
    [
        "from polyloss import _ops, _softmax\n_softmax.Softmax\n",  # private modules, public names
        "from polyloss.metrics import _counts\n_counts.fraction\n",
        "class A:\n    def f(self):\n        return self._x\n",  # attributes of objects are not module names
    ],
)
def test_the_private_name_check_allows_private_modules(source):
    assert not private_name_uses(source, "polyloss.losses.contrastive")
