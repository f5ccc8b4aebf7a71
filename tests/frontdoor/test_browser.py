"""The whole product path in a real browser: the upload page (drag and drop, previews, the audio's duration, keyboard)
-> a real bridge worker renders the job on the lite engine in the session's real ComfyUI -> the job page shows live
progress, then the video, which plays (readyState and currentTime advance) -> the download is the stored MP4."""
from __future__ import annotations

import base64
import hashlib
import os

import pytest
import requests

from .browser import chromium, screenshot_dir
from .conftest import speech_wav

pytestmark = pytest.mark.slow


def test_upload_render_play_download(frontdoor_factory, comfy_server, tmp_path):
    fd = frontdoor_factory()
    fd.worker(comfy_server.url)
    key = fd.key()
    shots = screenshot_dir(tmp_path)
    audio = tmp_path / "speech.wav"
    audio.write_bytes(speech_wav(1.2))
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "sample_media", "portrait.png"), "rb") as f:
        portrait = f.read()

    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(fd.url + "/")

        # The API key, entered and saved with the keyboard only.
        page.focus("#apikey")
        page.keyboard.type(key)
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.getElementById('keynote').textContent.includes('saved')")

        # The portrait is dropped onto its zone (a real drop event carrying a File); the audio is chosen.
        page.evaluate("""([b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'face.png', {type: 'image/png'}));
            const zone = document.getElementById('image-drop');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", [base64.b64encode(portrait).decode()])
        page.wait_for_function("() => document.getElementById('image-preview').naturalWidth > 0")
        page.set_input_files("#audio", str(audio))
        page.wait_for_function("() => document.getElementById('audio-duration').textContent.includes('Duration')")
        assert "1.2 s" in page.text_content("#audio-duration")
        page.select_option("#engine", "lite")
        page.select_option("#min_resolution", "256")
        page.fill("#seed", "11")
        page.screenshot(path=os.path.join(shots, "frontdoor-upload.png"), full_page=True)

        page.focus("#submit")
        page.keyboard.press("Enter")
        page.wait_for_url("**/jobs/*", timeout=60_000)
        job_id = page.url.rstrip("/").rsplit("/", 1)[1]
        page.wait_for_function("() => ['Queued: waiting for a worker…', 'Making the video…', 'Done.']"
                               ".includes(document.getElementById('status').textContent)", timeout=60_000)
        page.wait_for_selector("#result:not([hidden])", timeout=300_000)
        assert page.text_content("#status") == "Done."

        # The video plays: metadata and data arrive, and time moves forward.
        page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }")
        page.wait_for_function("() => document.getElementById('video').readyState >= 3", timeout=60_000)
        page.wait_for_function("() => document.getElementById('video').currentTime > 0.3", timeout=60_000)
        duration = page.evaluate("document.getElementById('video').duration")
        assert duration == pytest.approx(1.2, abs=0.1)
        page.evaluate("() => document.getElementById('video').pause()")
        page.screenshot(path=os.path.join(shots, "frontdoor-job.png"), full_page=True)

        # Download: the file the browser saves is the stored result.
        with page.expect_download() as dl:
            page.click("#download")
        saved = tmp_path / "download.mp4"
        dl.value.save_as(saved)
        job = requests.get(f"{fd.url}/v1/jobs/{job_id}", headers={"X-API-Key": key}, timeout=10).json()
        video = job["results"][0]
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == video["sha256"]
        assert page.input_value("#link").startswith(fd.url + f"/v1/jobs/{job_id}/files/video?")
        assert job["engine"] == "lite"

        # The list page shows the job; on a phone-sized screen the page still fits its width.
        phone = ctx.new_page()
        phone.set_viewport_size({"width": 375, "height": 740})
        phone.goto(fd.url + "/jobs")
        phone.wait_for_selector(f"a[href='/jobs/{job_id}']")
        assert "succeeded" in phone.text_content("#rows")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        phone.screenshot(path=os.path.join(shots, "frontdoor-jobs-phone.png"), full_page=True)
        phone.goto(fd.url + f"/jobs/{job_id}")
        phone.wait_for_selector("#result:not([hidden])")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        phone.screenshot(path=os.path.join(shots, "frontdoor-job-phone.png"), full_page=True)
        ctx.close()
    assert not [e for e in errors if "favicon" not in e], errors
