"""The wire contract is declared once (sonicflow_contract): the parts that speak it must use it, not a copy."""
from __future__ import annotations

import ast
import os

import sonicflow_contract as contract
from queue_bridge.front_door.openapi import PARAMETERS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_job_node_ids_are_the_contracts():
    tree = ast.parse(open(os.path.join(ROOT, "nodes", "job.py"), encoding="utf-8").read())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {contract.JOB_INPUT_NODE, contract.JOB_RESULT_NODE} <= classes


def test_engine_names_offered_by_the_api_are_the_contracts():
    assert PARAMETERS["properties"]["engine"]["enum"] == list(contract.ENGINES)


def test_node_error_codes_survive_the_comfyui_boundary():
    text = "Prompt failed: Exception: " + contract.tag_error("no_face", "SonicFlow PreData: image: no face. Fix: ...")
    assert contract.error_code(text) == "no_face"
    assert contract.error_code("SonicFlow PreData: image: no face. Fix: ...") is None  # untagged: not ours


def test_media_formats_sniffed_from_bytes():
    assert contract.media_format(b"\x89PNG\r\n\x1a\n" + b"\0" * 8) == "png"
    assert contract.media_format(b"RIFF\0\0\0\0WAVEfmt ") == "wav"
    assert contract.media_format(b"\0\0\0\x18ftypmp42") == "mp4"
    assert contract.media_format(b"<html>") is None
    assert set(contract.FORMAT_TYPES) == {f for kinds in contract.MEDIA_EXT.values() for f in kinds}


def test_environment_failures_of_nodes_are_retried_not_blamed_on_the_input():
    from queue_bridge.comfy_client import PromptFailed
    from queue_bridge.comfy_run import classify
    from sonic_core.errors import MissingDependencyError, MissingWeightsError, StorageError

    assert {StorageError.code, MissingWeightsError.code, MissingDependencyError.code} == set(
        contract.ENVIRONMENT_ERRORS)

    def failed(code):
        entry = {"status": {"status_str": "error", "messages": [["execution_error", {
            "exception_message": contract.tag_error(code, "SonicFlow Publish: storage: the bucket did not answer")}]]}}
        return classify(PromptFailed("p1", entry))

    assert (failed("storage_error").code, failed("storage_error").retryable) == ("storage_unavailable", True)
    assert (failed("missing_weights").code, failed("missing_weights").retryable) == ("execution_failed", True)
    assert (failed("no_face").code, failed("no_face").retryable) == ("media_rejected", False)
