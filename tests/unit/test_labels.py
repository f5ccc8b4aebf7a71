"""AI-content labels: the visible 'AI生成' on the first 2 s and the AIGC metadata, written and read back."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest

from sonic_core import GenerateOptions, check_labels, make_video
from sonic_core.publish.labels import aigc_metadata, overlay_for

FIELDS = ["Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory, example_image, example_audio):
    out = tmp_path_factory.mktemp("labels")
    paths = {}
    for mode in ("visible+metadata", "metadata", "off"):
        paths[mode] = str(out / f"{mode.replace('+', '_')}.mp4")
        make_video(example_image, example_audio, paths[mode], GenerateOptions(engine="lite"), duration=3.0, labels=mode)
    return paths


def test_both_labels_by_default(videos):
    report = check_labels(videos["visible+metadata"])
    assert report.visible and report.visible_score > 0.8
    assert list(report.implicit) == FIELDS and report.implicit["Label"] == "1"
    assert all(v.isascii() and " " not in v for v in report.implicit.values())


def test_metadata_only_and_off(videos):
    meta_only, off = check_labels(videos["metadata"]), check_labels(videos["off"])
    assert meta_only.implicit and not meta_only.visible and meta_only.visible_score < 0.3
    assert off.implicit is None and not off.visible


def test_visible_label_size_and_duration(videos):
    """At least 5 % of the shorter side tall, present for the first 2 s and gone after."""
    ov = overlay_for(512, 512)
    assert ov.alpha.shape[0] >= 0.05 * 512
    with av.open(videos["visible+metadata"]) as c, av.open(videos["off"]) as d:
        a = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        b = [f.to_ndarray(format="rgb24") for f in d.decode(video=0)]
    box = (slice(ov.y, ov.y + ov.alpha.shape[0]), slice(ov.x, ov.x + ov.alpha.shape[1]))
    diff = [np.abs(x[box].astype(int) - y[box]).mean() for x, y in zip(a, b)]
    assert min(diff[:50]) > 20 and max(diff[52:]) < 3, (min(diff[:50]), max(diff[52:]))


def test_metadata_fields_are_printable_ascii_without_spaces():
    meta = json.loads(aigc_metadata(producer="Sonic Flow 有限公司")["AIGC"])
    assert meta["ContentProducer"] == "Sonic_Flow_____" and len(meta["ProduceID"]) == 32
