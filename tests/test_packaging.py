"""The wheel is the product: built from this checkout, installed into a fresh virtual environment,
it runs a shortened default transfer from a folder outside the checkout (recipes and the toy zoo
ship inside it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_installs_and_transfers_from_any_folder(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools builds inside the tree it is given
    ignored = shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache")
    shutil.copytree(ROOT, source, ignore=ignored)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source))
    (wheel,) = dist.glob("vpgtrans-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vpgtrans/_resources/recipes/transfers.toml", "vpgtrans/_resources/recipes/models.toml",
            "vpgtrans/_resources/checkpoints/toy-llama/model.safetensors",
            "vpgtrans/_resources/checkpoints/toy-blip2-opt-s/model.safetensors"} <= names  # fmt: skip
    # A fresh venv; the dependencies (torch, transformers...) are lent from this environment by a
    # path line, which does not run its .pth files: the editable install of the checkout stays out.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    site = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    Path(site, "lent-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VPGTRANS_HOME", "PYTHONPATH")}
    where = _run(str(python), "-c", "import vpgtrans; print(vpgtrans.__file__)", cwd=elsewhere, env=env).stdout
    assert where.startswith(site), where
    out = _run(
        str(venv / "bin" / "vpgtrans"),
        "transfer",
        "--stage1-steps",
        "2",
        "--stage2-steps",
        "2",
        "--eval-limit",
        "4",
        "--batch-size",
        "8",
        cwd=elsewhere,
        env=env,
    ).stdout
    run = elsewhere / "runs" / "toy-blip2-opt-s-to-toy-llama"
    assert f"model: {Path('runs') / 'toy-blip2-opt-s-to-toy-llama' / 'model'}" in out
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["config"]["dst"] == "toy-llama"
    assert set(record["evaluation"]["transferred"]) == {"caption", "cider", "vqa"}
    assert (run / "model" / "model.safetensors").is_file() and (run / "report" / "report.html").is_file()
