"""Generate inside ComfyUI runs where ComfyUI says: its torch device, and for memory_mode 'auto' its VRAM state
(--lowvram/--novram: offload; --highvram/--gpu-only: gpu). The pack is loaded the way ComfyUI loads it, next to the
real comfy.model_management, whose VRAM state is set to each value (a CPU machine can only reach 'DISABLED')."""
from __future__ import annotations

import json
import subprocess
import textwrap

from devtools.comfyui import COMFY_DIR, PYTHON, ROOT

PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    root, comfy_dir, input_dir = sys.argv[1:4]
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args
    args.cpu = True
    import folder_paths
    folder_paths.set_input_directory(input_dir)
    import comfy.model_management as mm
    spec = importlib.util.spec_from_file_location("SonicFlow", root + "/__init__.py", submodule_search_locations=[root])
    sys.modules["SonicFlow"] = pack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack)
    from SonicFlow.nodes.models import comfy_placement
    seen = {}
    for state in mm.VRAMState:
        mm.vram_state = state
        seen[state.name] = comfy_placement("auto")
    seen["asked for gpu"] = comfy_placement("gpu")
    print(json.dumps({"device": str(mm.get_torch_device()), "seen": seen}))
""")


def test_auto_memory_mode_follows_comfyui_vram_state(tmp_path):
    r = subprocess.run([PYTHON, "-c", PROBE, ROOT, COMFY_DIR, str(tmp_path)], cwd=COMFY_DIR, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    modes = {state: placed["memory_mode"] for state, placed in out["seen"].items()}
    assert modes == {"DISABLED": "auto", "NO_VRAM": "offload", "LOW_VRAM": "offload", "NORMAL_VRAM": "auto",
                     "HIGH_VRAM": "gpu", "SHARED": "auto", "asked for gpu": "gpu"}
    assert {placed["device"] for placed in out["seen"].values()} == {out["device"]} == {"cpu"}
