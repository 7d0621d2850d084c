"""pip builds a wheel of python/ offline (Debian's pip and setuptools, no index), and it works installed."""
import os
import shutil
import subprocess
import sys
import zipfile

from conftest import PYTHON_DIR, REPO


def pip(*arguments, cwd):
    result = subprocess.run(
        [sys.executable, "-m", "pip", *arguments, "--no-index", "--disable-pip-version-check", "-q"],
        capture_output=True, text=True, cwd=cwd, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_builds_offline_and_runs_installed(tmp_path):
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(PYTHON_DIR, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    pip("wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "wheels"), cwd=tmp_path)
    [wheel] = (tmp_path / "wheels").iterdir()
    assert wheel.name == "aiges_embed-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("aiges_embed-0.1.0.dist-info/METADATA").decode()
    modules = {name for name in names if not name.startswith("aiges_embed-0.1.0.dist-info/")}
    assert modules == {f"aiges_embed/{name}" for name in (
        "__init__.py", "__main__.py", "_contract.py", "_plugin.py", "runner.py")}
    assert "Requires-Dist" not in metadata  # the standard library only

    target = tmp_path / "installed"
    pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)
    check = (
        "import aiges_embed, sys\n"
        "assert aiges_embed.__file__.startswith(sys.argv[1]), aiges_embed.__file__\n"
        "try:\n"
        "    aiges_embed.callback(aiges_embed.Response(), 'tag')\n"
        "except RuntimeError as error:\n"
        "    print(error)\n")
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", check, str(target)], capture_output=True, text=True,
                            cwd=tmp_path, env=environment, check=False)
    assert result.returncode == 0, result.stderr
    assert "only work in the process that loaded libwrapper.so" in result.stdout
    echo = os.path.join(REPO, "examples", "echo", "wrapper.py")
    result = subprocess.run([sys.executable, "-m", "aiges_embed", "run", echo, "-i", "text=installed"],
                            capture_output=True, text=True, cwd=tmp_path, env=environment, check=False)
    assert result.returncode == 0, result.stderr
    assert 'key=text type=0 status=3 len=9 data="installed"' in result.stdout
