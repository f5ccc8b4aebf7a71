"""Test-only ComfyUI nodes for the bridge tests (linked into the test ComfyUI's custom_nodes, never shipped):
a sleep that honours Cancel / POST /interrupt, and a node that kills ComfyUI (a poison job)."""
import os
import time

import comfy.model_management


class SonicFlowTestSleep:
    CATEGORY = "SonicFlow/tests"
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "sleep"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "tooltip": "how long"}),
                             "tag": ("STRING", {"default": "", "tooltip": "makes each prompt distinct"})}}

    def sleep(self, seconds, tag):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.05)
        return (seconds,)


class SonicFlowTestCrash:
    CATEGORY = "SonicFlow/tests"
    RETURN_TYPES = ("INT",)
    FUNCTION = "maybe_crash"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"crash": ("INT", {"default": 0, "tooltip": "1 = kill ComfyUI"}),
                             "tag": ("STRING", {"default": "", "tooltip": "makes each prompt distinct"})}}

    def maybe_crash(self, crash, tag):
        if crash:
            os._exit(17)
        return (crash,)


NODE_CLASS_MAPPINGS = {"SonicFlowTestSleep": SonicFlowTestSleep, "SonicFlowTestCrash": SonicFlowTestCrash}
