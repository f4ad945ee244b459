"""The shape of the code: import contracts (.importlinter), module sizes, and who may spell a
path under the media directory."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imgz"
MAX_LINES = 330
# Only these modules know where stored files live or how their keys are spelled.
MEDIA_PATH_OWNERS = {"layout.py", "store/__init__.py", "store/local.py"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    # its own process: the linter sets up logging of its own, which must not reach other tests
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()", "--no-cache", "--config", ".importlinter"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout, run.stdout


def test_the_contracts_name_every_module_of_the_package() -> None:
    """The layers contract is exhaustive; this says which module is missing in plain words."""
    text = (ROOT / ".importlinter").read_text()
    layers = text.split("layers =", 1)[1].split("\n[", 1)[0]
    named = {name.strip() for line in layers.splitlines() for name in line.replace("|", ":").split(":")}
    children = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()} - {"__init__"}
    assert children <= named, f"not in a layer of .importlinter: {sorted(children - named)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by noun"


def _media_spellings(path: Path) -> list[str]:
    """Where a module spells the media folder: the literal 'images' as a path or URL part, or
    the layout's folder name used to build a path."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(c.isspace() for c in node.value):
                continue  # prose (docstrings, messages), not a path
            parts = node.value.replace("\\", "/").split("/")
            if "images" in parts:
                found.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in {"DIR", "images_dir"}:
            if isinstance(node.value, ast.Name) and node.value.id == "layout":
                found.append(f"line {node.lineno}: layout.{node.attr}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_store_and_layout_spell_the_media_folder(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    if relative in MEDIA_PATH_OWNERS:
        pytest.skip("owner of the media layout")
    assert _media_spellings(path) == [], relative


def test_the_media_folder_check_sees_a_spelling() -> None:
    """The check above is not blind: the owners do spell the folder."""
    assert _media_spellings(PACKAGE / "layout.py")


def test_media_workers_load_no_web_framework_or_database_library() -> None:
    """A worker process loads imgz.render and imgz.worker only: every worker is lighter for it."""
    code = ("import sys, imgz.render, imgz.worker; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'flask', 'werkzeug', 'waitress', 'sqlalchemy', 'sqlite3', 'click', 'jinja2'}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
