"""The S3 SDK stays out of a default start, and a start that needs it but lacks it says so."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_a_default_start_imports_no_s3_sdk(tmp_path):
    code = f"""
import sys
from imgz.web import create_app
from imgz import cli
app = create_app({{"data": {str(tmp_path / "data")!r}}}, environ={{}}, jobs=False)
service = app.config["IMGZ_SERVICE"]
service.check_free_space()
print(sorted(m for m in sys.modules if m.split(".")[0] in {{"boto3", "botocore", "s3transfer"}}))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_s3_without_boto3_stops_the_start_with_one_line(tmp_path):
    """boto3 made unimportable (as on an install without requirements-scale.txt)."""
    hidden = tmp_path / "hidden"
    (hidden / "boto3").mkdir(parents=True)
    (hidden / "boto3" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'boto3'\", name='boto3')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(hidden), "IMGZ_STORAGE": "s3",
           "IMGZ_S3_BUCKET": "imgz-files", "IMGZ_S3_ENDPOINT": "http://127.0.0.1:1"}
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "serve", "--host", "127.0.0.1",
                          "--port", "0", "--data", str(tmp_path / "data")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "boto3" in lines[0] and "requirements-scale.txt" in lines[0]
