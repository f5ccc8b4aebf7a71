"""Model folders: registers models/sonic with ComfyUI so ComfyUI_Sonic users reuse their downloads."""
from __future__ import annotations

import os

import folder_paths

FOLDER = "sonic"

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)


def sonic_model_roots() -> list[str]:
    return list(folder_paths.get_folder_paths(FOLDER))
