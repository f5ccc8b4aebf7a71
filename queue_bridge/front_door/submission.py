"""Reading a submission (POST /v1/jobs): a multipart upload or JSON with URLs -> a checked `Submission`.

In order of cost, so that a refusal costs the service little: size limits and a deadline while reading (a body that
trickles in is cut off), the fields and the parameters (against the template's declared interface), the webhook
target, then (the caller checks the quota here) the URL inputs, fetched by the front door itself within a deadline
and a per-key cap, then the content checks of the bytes. Nothing is stored until the caller has the whole Submission.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from urllib.parse import urlparse

from aiohttp.http_exceptions import HttpProcessingError

from sonicflow_contract import MAX_URL

from .. import InputPolicy, JobError, TemplateLibrary, check_interface, fetch
from .api_errors import ApiError
from .api_settings import ApiSettings
from .openapi import JSON_REQUEST, MULTIPART_REQUEST, PARAMETERS
from .pools import Pool, Slots
from .validate import MediaRejected, check_media
from .webhooks import check_target

TEXT_FIELDS = tuple(k for k, v in MULTIPART_REQUEST["properties"].items() if v.get("format") != "binary")
JSON_FIELDS = set(JSON_REQUEST["properties"])
MAX_JSON = 65536
URL_STATUS = {"input_too_large": 413, "unsupported_media": 415}  # HTTP status of the fetcher's codes
# What a client is told when a URL input is refused: our decision, never what the remote end answered or which
# address a name resolved to (that would make the front door a scanner's oracle for networks it can reach).
URL_REFUSED = {
    "input_not_found": "the URL did not give a file",
    "input_unavailable": "the URL could not be fetched (unreachable, too slow, or a server error); retry later",
    "private_address": "the host resolves to a private, loopback, link-local or otherwise non-public address",
    "host_not_allowed": "the host is not on this service's allow-list",
    "scheme_not_allowed": "only http(s) URLs are accepted",
    "input_too_large": "the file is larger than the limit",
}


@dataclass
class Submission:
    parameters: dict
    webhook_url: str | None
    metadata: dict | None
    urls: dict = field(default_factory=dict)    # name -> URL still to fetch (JSON submissions)
    files: dict = field(default_factory=dict)   # name -> (bytes, file name, declared content type)
    checked: dict = field(default_factory=dict)  # name -> validate.Checked
    digests: dict = field(default_factory=dict)  # name -> sha256 of the bytes

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: the same key with another request is a conflict."""
        return hashlib.sha256(json.dumps([self.digests, self.parameters, self.webhook_url, self.metadata],
                                         sort_keys=True).encode()).hexdigest()


def _json(raw: bytes | str, what: str):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested
        raise ApiError(400, "bad_json" if what == "body" else "bad_field", f"{what}: not valid JSON",
                       field=None if what == "body" else what) from None


def _check_metadata(meta) -> dict | None:
    """The same limits on both paths (multipart and JSON): an object of at most 16 keys and 4 KiB."""
    if meta is None:
        return None
    if not isinstance(meta, dict) or len(meta) > 16 or len(json.dumps(meta)) > 4096:
        raise ApiError(400, "bad_field", "metadata: a JSON object of at most 16 keys / 4 KiB", field="metadata")
    return meta


class SubmissionReader:
    def __init__(self, settings: ApiSettings, templates: TemplateLibrary, work: Pool, fetches: Pool,
                 fetch_slots: Slots):
        self.s, self.templates = settings, templates
        self.work, self.fetches, self.fetch_slots = work, fetches, fetch_slots

    def limit_of(self, name: str) -> int:
        return self.s.max_image_bytes if name == "image" else self.s.max_audio_bytes

    async def parse(self, request) -> Submission:
        """The request's fields, parameters and webhook checked; URL inputs not fetched yet."""
        ctype = request.content_type
        if ctype not in ("multipart/form-data", "application/json"):
            raise ApiError(415, "unsupported_content_type", "send multipart/form-data (files) or application/json "
                                                           "(URLs)")
        try:
            sub = await asyncio.wait_for(self._multipart(request) if ctype == "multipart/form-data"
                                         else self._json_body(request), self.s.upload_deadline_s)
        except asyncio.TimeoutError:
            raise ApiError(408, "upload_timeout", f"the request body did not arrive within "
                                                  f"{self.s.upload_deadline_s:g} s", {"Connection": "close"}) from None
        sub.parameters = self.check_parameters(sub.parameters)
        if sub.webhook_url:
            if len(sub.webhook_url) > MAX_URL:  # it is stored with the job and sent to at every delivery
                raise ApiError(400, "bad_field", f"webhook_url: at most {MAX_URL} characters", field="webhook_url")
            try:
                await self.fetches.run(check_target, sub.webhook_url, list(self.s.webhook_allow))
            except JobError as e:  # what was decided, never what the name resolved to (a scanner's oracle)
                why = URL_REFUSED[e.code] if e.code in ("private_address", "input_unavailable") else e.message
                raise ApiError(422, e.code, f"webhook_url: {why}", field="webhook_url") from None
        return sub

    async def complete(self, sub: Submission, key: dict) -> Submission:
        """Fetch the URL inputs (at most `fetch_per_key` at once for this key) and check every file's content."""
        for name, url in sub.urls.items():
            sub.files[name] = await self._fetch(url, name, key)

        def check_all():
            return {name: check_media(data, name, name, filename=filename, content_type=ctype,
                                      max_bytes=self.limit_of(name), max_audio_s=self.s.max_audio_s,
                                      min_audio_s=self.s.min_audio_s)
                    for name, (data, filename, ctype) in sub.files.items()}

        try:
            sub.checked = await self.work.run(check_all)
        except MediaRejected as e:
            raise ApiError(e.status, e.code, e.message, field=e.field) from None
        sub.digests = {n: hashlib.sha256(sub.files[n][0]).hexdigest() for n in sub.files}
        return sub

    # -- the two body formats ------------------------------------------------------------------------------------

    async def _read_part(self, part, limit: int, what: str) -> bytes:
        buf = bytearray()
        while True:
            chunk = await part.read_chunk(1 << 16)
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, "payload_too_large", f"{what}: over the {limit} byte limit", field=what)

    async def _multipart(self, request) -> Submission:
        files, fields = {}, {}
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name
                if name in ("image", "audio"):
                    if name in files:
                        raise ApiError(400, "duplicate_field", f"{name} given twice", field=name)
                    data = await self._read_part(part, self.limit_of(name), name)
                    files[name] = (data, part.filename, part.headers.get("Content-Type"))
                elif name in TEXT_FIELDS:
                    if name in fields:
                        raise ApiError(400, "duplicate_field", f"{name} given twice", field=name)
                    raw = await self._read_part(part, 16384, name)
                    try:
                        fields[name] = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ApiError(400, "bad_field", f"{name}: not UTF-8 text", field=name) from None
                else:
                    raise ApiError(400, "unknown_field", f"unknown form field {str(name)[:40]!r}; fields are image, "
                                                         f"audio, {', '.join(TEXT_FIELDS)}", field=str(name)[:40])
        except ApiError:
            raise
        except (ValueError, AssertionError, AttributeError, KeyError, LookupError, TypeError, UnicodeError,
                HttpProcessingError) as e:
            raise ApiError(400, "bad_multipart", f"the multipart body cannot be read: {e}"[:300]) from None
        for name in ("image", "audio"):
            if name not in files:
                raise ApiError(400, "missing_field", f"{name}: a file is required", field=name)
        params = _json(fields["parameters"], "parameters") if "parameters" in fields else {}
        if not isinstance(params, dict):
            raise ApiError(400, "bad_field", "parameters: not a JSON object", field="parameters")
        for name in ("seed", "min_resolution"):
            if name in fields:
                try:
                    params[name] = int(fields[name].strip())
                except ValueError:
                    raise ApiError(422, "bad_parameter", f"{name}: not an integer", field=name) from None
        if "engine" in fields:
            params["engine"] = fields["engine"].strip()
        meta = _check_metadata(_json(fields["metadata"], "metadata")) if "metadata" in fields else None
        return Submission(params, fields.get("webhook_url") or None, meta, files=files)

    async def _json_body(self, request) -> Submission:
        raw = bytearray()
        while len(raw) <= MAX_JSON:  # the whole body, however many reads it arrives in
            chunk = await request.content.read(MAX_JSON + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_JSON:
            raise ApiError(413, "payload_too_large", "a JSON request is at most 64 KiB (send files as multipart)")
        doc = _json(bytes(raw), "body")
        if not isinstance(doc, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        unknown = set(doc) - JSON_FIELDS
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
        urls = {}
        for name in ("image", "audio"):
            url = doc.get(f"{name}_url")
            if not isinstance(url, str) or not url:
                raise ApiError(400, "missing_field", f"{name}_url: an http(s) URL is required", field=f"{name}_url")
            if urlparse(url).scheme.lower() not in ("http", "https") or len(url) > MAX_URL:
                raise ApiError(422, "scheme_not_allowed", f"{name}_url: only http(s) URLs are accepted",
                               field=f"{name}_url")
            urls[name] = url
        params = doc.get("parameters", {})
        if not isinstance(params, dict):
            raise ApiError(400, "bad_field", "parameters: not a JSON object", field="parameters")
        hook = doc.get("webhook_url")
        if hook is not None and not isinstance(hook, str):
            raise ApiError(400, "bad_field", "webhook_url: a string", field="webhook_url")
        return Submission(params, hook or None, _check_metadata(doc.get("metadata")), urls=urls)

    async def _fetch(self, url: str, name: str, key: dict):
        """The front door fetches URL inputs itself (the bridge's fetcher: allow-list, address checks after DNS and
        on every redirect, size limit, deadline and minimum rate) so it can check their content before anything is
        queued. Its messages say what was refused, never what a remote server answered (a scanner's oracle)."""
        policy = InputPolicy(http_allow=list(self.s.url_allow), max_bytes=self.limit_of(name),
                             allow_private_networks=self.s.allow_private_inputs, deadline_s=self.s.fetch_deadline_s,
                             min_rate_bps=self.s.fetch_min_kbps * 1024)
        try:
            with self.fetch_slots.take(key["id"]):
                data = await self.fetches.run(fetch, url, policy)
        except JobError as e:
            raise ApiError(URL_STATUS.get(e.code, 422), e.code, f"{name}_url: {URL_REFUSED.get(e.code, e.code)}",
                           field=f"{name}_url") from None
        except ValueError:  # a URL urllib3 cannot even parse (a port out of range...)
            raise ApiError(422, "input_unavailable", f"{name}_url: {URL_REFUSED['input_unavailable']}",
                           field=f"{name}_url") from None
        return data, None, None  # a URL's path names no file (img.php?id=1): its bytes alone say what it is

    def check_parameters(self, params: dict) -> dict:
        import jsonschema

        errors = list(jsonschema.Draft202012Validator(PARAMETERS).iter_errors(params))
        if errors:
            e = errors[0]
            where = "/".join(map(str, e.absolute_path)) or "parameters"
            raise ApiError(422, "bad_parameter", f"{where}: {e.message}"[:300], field=where)
        try:
            check_interface(self.templates.get(self.s.template), {"image": "", "audio": ""}, params)
        except JobError as e:
            raise ApiError(422 if e.code != "unknown_template" else 503, e.code, e.message) from None
        return params
