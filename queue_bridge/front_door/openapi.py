"""The OpenAPI 3.1 document of the front door, served at /v1/openapi.json (docs/api.md explains it in prose)."""
from __future__ import annotations

from sonicflow_contract import ENGINES, MAX_URL, MIN_RESOLUTION, SEED_MAX

RESOLUTION_RANGE = dict(zip(("minimum", "maximum", "multipleOf"), MIN_RESOLUTION))

PARAMETERS = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX,
                 "description": "Same seed + same inputs = same video."},
        "engine": {"type": "string", "enum": list(ENGINES), "description": "auto: sonic when installed, else lite."},
        "min_resolution": {"type": "integer", **RESOLUTION_RANGE,
                           "description": "Short side of the face crop (official 512)."},
    },
}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}

RESULT = {"type": "object", "properties": {
    "name": {"type": "string"}, "url": {"type": "string", "description": "Signed download link (no API key needed)."},
    "sha256": {"type": "string"}, "size": {"type": "integer"}, "content_type": {"type": "string"}}}

JOB = {"type": "object", "required": ["id", "status", "status_url"], "properties": {
    "id": {"type": "string"},
    "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
    "progress": {"type": "number", "minimum": 0, "maximum": 1},
    "progress_node": {"type": ["string", "null"]},
    "template": {"type": "string"},
    "parameters": {"type": ["object", "null"]},
    "inputs": {"type": ["object", "null"]},
    "results": {"type": "array", "items": RESULT},
    "engine": {"type": ["string", "null"]},
    "error": {"type": ["object", "null"]},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
    "status_url": {"type": "string"}, "events_url": {"type": "string"}, "page_url": {"type": "string"},
    "webhook": {"type": ["object", "null"]},
}}

JSON_REQUEST = {"type": "object", "additionalProperties": False, "required": ["image_url", "audio_url"], "properties": {
    "image_url": {"type": "string", "format": "uri", "maxLength": MAX_URL,
                  "description": "http(s) URL of the portrait; private, loopback and link-local addresses are "
                                 "refused."},
    "audio_url": {"type": "string", "format": "uri", "maxLength": MAX_URL},
    "parameters": PARAMETERS,
    "webhook_url": {"type": "string", "format": "uri", "maxLength": MAX_URL},
    "metadata": {"type": "object", "maxProperties": 16},
}}

MULTIPART_REQUEST = {"type": "object", "required": ["image", "audio"], "properties": {
    "image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP portrait."},
    "audio": {"type": "string", "format": "binary", "description": "WAV, MP3, FLAC, Ogg or M4A speech."},
    "parameters": {"type": "string",
                   "description": "JSON object of parameters (or give seed/engine/min_resolution as fields)."},
    "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
    "engine": {"type": "string", "enum": list(ENGINES)},
    "min_resolution": {"type": "integer", **RESOLUTION_RANGE},
    "webhook_url": {"type": "string", "format": "uri", "maxLength": MAX_URL},
    "metadata": {"type": "string", "description": "JSON object echoed back with the job."},
}}


def _err(desc: str) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


COMMON_ERRORS = {"401": _err("Missing or wrong API key (code unauthorized)."),
                 "429": _err("Rate limit (rate_limited) or daily quota (quota_exceeded); see Retry-After.")}
JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}


def document(version: str = "1.0.0") -> dict:
    job_ref = {"$ref": "#/components/schemas/Job"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "SonicFlow front door", "version": version,
                 "description": "Upload a portrait and a speech track, get a talking-head MP4. See docs/api.md."},
        "servers": [{"url": "/"}],
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "paths": {
            "/v1/jobs": {
                "post": {
                    "operationId": "createJob", "summary": "Submit a job",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                                    "description": "The same key (per API key) returns the same job."}],
                    "requestBody": {"required": True, "content": {
                        "multipart/form-data": {"schema": MULTIPART_REQUEST},
                        "application/json": {"schema": JSON_REQUEST}}},
                    "responses": {
                        "202": {"description": "Accepted: queued (confirmed by the broker), or sent without a "
                                               "confirm in time and kept: published again under the same id until "
                                               "confirmed.",
                                "headers": {"Location": {"schema": {"type": "string"}}},
                                "content": {"application/json": {"schema": job_ref}}},
                        "200": {"description": "An Idempotency-Key seen before: the job it made.",
                                "content": {"application/json": {"schema": job_ref}}},
                        "400": _err("Malformed request, bad file name, unknown field."),
                        "408": _err("The request body did not arrive within the upload deadline (upload_timeout)."),
                        **COMMON_ERRORS,
                        "409": _err("Idempotency-Key reused with a different request."),
                        "413": _err("A file or the request is over its size limit."),
                        "415": _err("Not a supported image/audio format, or declared as something it is not."),
                        "422": _err("Content or URL refused: corrupt, too large in pixels, too long, too many "
                                    "samples (rate, channels), polyglot, not a public address, bad parameter."),
                        "503": _err("The queue did not accept the job; nothing was queued. Retry later."),
                    },
                },
                "get": {
                    "operationId": "listJobs", "summary": "This key's jobs, newest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "before", "in": "query", "schema": {"type": "number"},
                         "description": "Only jobs created before this time (seconds since the epoch)."}],
                    "responses": {"200": {"description": "Jobs", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"jobs": {"type": "array", "items": job_ref}}}}}},
                        "400": _err("Bad query."), **COMMON_ERRORS},
                },
            },
            "/v1/jobs/{id}": {
                "get": {
                    "operationId": "getJob", "summary": "Status, progress and result links of one job",
                    "parameters": [JOB_ID],
                    "responses": {"200": {"description": "The job",
                                          "content": {"application/json": {"schema": job_ref}}},
                                  "404": _err("No such job for this key."), **COMMON_ERRORS}},
                "delete": {
                    "operationId": "cancelJob", "summary": "Cancel a job: skipped if queued, interrupted if running",
                    "parameters": [JOB_ID],
                    "responses": {"200": {"description": "The job, cancelled (also when it already was: a repeated "
                                                         "cancel answers the same)",
                                          "content": {"application/json": {"schema": job_ref}}},
                                  "404": _err("No such job for this key."), **COMMON_ERRORS,
                                  "409": _err("The job had already succeeded or failed (already_finished)."),
                                  "503": _err("The store or the job store is unavailable; nothing was cancelled. "
                                              "Retry later.")}}},
            "/v1/jobs/{id}/events": {"get": {
                "operationId": "jobEvents", "summary": "Server-sent events: one `job` event per change, until done",
                "parameters": [JOB_ID, {"name": "Last-Event-ID", "in": "header", "required": False,
                                        "schema": {"type": "string", "maxLength": 20}}],
                "responses": {"200": {"description": "text/event-stream of `event: job` with the job as data",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              "404": _err("No such job for this key."), **COMMON_ERRORS,
                              "429": _err("Rate limit, or this key's event streams are all open "
                                          "(too_many_streams).")}}},
            "/v1/jobs/{id}/files/{name}": {"get": {
                "operationId": "getFile", "summary": "A result file, through the signed link in `results`",
                "security": [],
                "parameters": [JOB_ID, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
                               {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                               {"name": "download", "in": "query", "schema": {"type": "integer", "enum": [0, 1]}}],
                "responses": {"200": {"description": "The file (Range requests supported)",
                                      "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
                              "302": {"description": "Redirect to a pre-signed object-store URL (S3 stores)"},
                              "403": _err("Bad signature, or the key that made the job was revoked (key_revoked)."),
                              "404": _err("No such file."),
                              "410": _err("Link expired.")}}},
            "/v1/openapi.json": {"get": {"operationId": "openapi", "security": [], "summary": "This document",
                                         "responses": {"200": {"description": "OpenAPI 3.1",
                                                               "content": {"application/json": {}}}}}},
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Job": JOB, "Error": ERROR, "Parameters": PARAMETERS},
        },
    }
