"""`pip install .` (not editable) ships everything the code reads at run time: the AI label glyphs, the job schema,
the front-door pages and the workflow templates; and an installed bridge writes under the working directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy of the files git would commit: no build/ left in the checkout, nothing ignored slips in
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, stdout=subprocess.PIPE,
                           text=True, check=True).stdout.splitlines()
    for f in files:
        if os.path.isfile(os.path.join(ROOT, f)):
            os.makedirs(os.path.dirname(tmp / "src" / f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), tmp / "src" / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp / "dist"), str(tmp / "src")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    (wheel,) = (tmp / "dist").glob("sonicflow-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "site")  # a wheel is installed by unpacking it; no pip needed to look inside
        names = set(z.namelist())
    return tmp, names


def test_wheel_carries_every_data_file(installed):
    _, names = installed
    tracked = subprocess.run(["git", "ls-files", "web/pages", "templates"], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, check=True).stdout.split()
    want = {"sonic_core/publish/aigc_label.png", "sonic_core/mouth_meter.py", "sonic_core/mouth_meter_requirements.txt",
            "queue_bridge/job_schema.json"}
    want |= {"queue_bridge/pages/" + os.path.basename(p) for p in tracked if p.startswith("web/pages/")}
    want |= {"queue_bridge/templates/" + os.path.basename(p) for p in tracked if p.startswith("templates/")}
    assert want - names == set()


def test_installed_package_finds_its_data_outside_a_checkout(installed):
    tmp, _ = installed
    work = tmp / "work"
    work.mkdir()
    code = ("import os, queue_bridge.front_door.pages as p, queue_bridge.paths as c, queue_bridge as q, "
            "sonic_core.publish.labels as l; "
            "print(c.CHECKOUT, p.PAGES, q.Settings().templates, c.OUT, os.path.dirname(l.__file__))")
    env = dict(os.environ, PYTHONPATH=str(tmp / "site"))
    for name in [k for k in env if k.startswith("SONICFLOW_")]:
        del env[name]
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    checkout, pages, templates, out, labels = r.stdout.split()
    assert checkout == "False" and pages.startswith(str(tmp / "site")) and templates.startswith(str(tmp / "site"))
    assert os.path.isfile(os.path.join(pages, "upload.html"))
    assert os.path.isfile(os.path.join(templates, "talking_head_api.json"))
    assert os.path.isfile(os.path.join(labels, "aigc_label.png"))
    assert out == str(work / "out")
