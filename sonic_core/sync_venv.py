"""The lip-sync meter's side venv: MediaPipe FaceMesh (numpy<2) kept apart from SonicFlow's own environment.

The meter script (mouth_meter.py) runs as a subprocess with that venv's Python and prints its mouth track as JSON.
Where the venv lives: $SONICFLOW_SYNC_VENV, else .venv-sync at the top of a checkout, else
~/.cache/sonicflow/venv-sync for an installed package.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from .errors import SyncMeterError

_HERE = os.path.dirname(os.path.abspath(__file__))
METER = os.path.join(_HERE, "mouth_meter.py")
REQUIREMENTS = os.path.join(_HERE, "mouth_meter_requirements.txt")
SETUP_COMMAND = "sonicflow sync-check --setup"
_STAMP = ".sonicflow-sync"   # holds the hash of the requirements it was built from
_CHECK = "import av, mediapipe.python.solutions.face_mesh, mediapipe.python.solutions.face_detection"
_PYTHONS = ((3, 9), (3, 12))   # the Pythons mediapipe 0.10.21 has wheels for


def venv_dir() -> str:
    if os.environ.get("SONICFLOW_SYNC_VENV"):
        return os.path.abspath(os.environ["SONICFLOW_SYNC_VENV"])
    checkout = os.path.dirname(_HERE)
    if os.path.isfile(os.path.join(checkout, "pyproject.toml")):
        return os.path.join(checkout, ".venv-sync")
    return os.path.join(os.path.expanduser("~"), ".cache", "sonicflow", "venv-sync")


def venv_python(venv: str) -> str:
    return os.path.join(venv, "Scripts", "python.exe") if os.name == "nt" else os.path.join(venv, "bin", "python")


def _requirements_hash() -> str:
    with open(REQUIREMENTS, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _stamp(venv: str) -> str | None:
    try:
        with open(os.path.join(venv, _STAMP)) as f:
            return f.read().strip()
    except OSError:
        return None


def is_ready(venv: str) -> bool:
    return os.path.isfile(venv_python(venv)) and _stamp(venv) == _requirements_hash()


def _run(cmd: list[str], what: str, venv: str) -> None:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SyncMeterError(f"{what} failed in {venv}:\n{r.stdout[-3000:]}",
                             f"fix the cause above and run `{SETUP_COMMAND}` again")


def setup_sync_meter(venv: str | None = None) -> str:
    """Creates (or brings up to date) the meter's venv; does nothing when its stamp matches the requirements."""
    venv = venv or venv_dir()
    if is_ready(venv):
        return venv
    if not _PYTHONS[0] <= sys.version_info[:2] <= _PYTHONS[1]:
        raise SyncMeterError(f"mediapipe 0.10.21 has no wheel for Python {sys.version_info[0]}.{sys.version_info[1]}",
                             f"make {venv} by hand with a Python 3.9-3.12, as the header of {REQUIREMENTS} shows")
    print(f"[sync-check] installing MediaPipe FaceMesh into {venv} (first time: about a minute)", file=sys.stderr)
    if not os.path.isfile(venv_python(venv)):
        _run([sys.executable, "-m", "venv", venv], "creating the venv", venv)
    py = venv_python(venv)
    _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "-r", REQUIREMENTS],
         "pip install", venv)
    _run([py, "-c", _CHECK], "importing the meter's modules", venv)
    with open(os.path.join(venv, _STAMP), "w") as f:
        f.write(_requirements_hash())
    return venv


def run_meter(video_path: str) -> dict:
    """The mouth track of a video from mouth_meter.py in the side venv: {"fps", "times", "mouth"}."""
    venv = venv_dir()
    if not os.path.isfile(venv_python(venv)):
        raise SyncMeterError(f"its venv {venv} is missing",
                             f"run `{SETUP_COMMAND}` (once; it installs MediaPipe FaceMesh there)")
    if _stamp(venv) not in (None, _requirements_hash()):   # no stamp: made by hand, as REQUIREMENTS shows
        raise SyncMeterError(f"its venv {venv} was built from an older {REQUIREMENTS}", f"run `{SETUP_COMMAND}`")
    # absl/TFLite log to stderr on every start; keep only their errors
    env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([venv_python(venv), METER, video_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env)
    if r.returncode != 0:
        raise SyncMeterError(f"the FaceMesh meter failed on '{video_path}':\n{r.stderr[-3000:]}",
                             f"if it cannot import its modules, run `{SETUP_COMMAND}`")
    return json.loads(r.stdout)
