"""Files operators upload: read from a multipart request with clear 4xx answers, nothing stored on error."""
import mimetypes

from flask import request

from app.api.errors import ApiError
from app.channels.base import OutboundFile

_SLACK = 64 * 1024   # the multipart envelope and a caption around the file


def reply_upload(max_bytes: int, max_text: int) -> tuple[str, OutboundFile]:
    """(caption, file) of a reply upload: one part `file` (not empty, at most `max_bytes`) and an
    optional field `text`."""
    request.max_content_length = max_bytes + max_text * 4 + _SLACK   # above the JSON routes' limit
    unknown = sorted(set(request.files) - {"file"} | set(request.form) - {"text"})
    if unknown:
        raise ApiError(400, "unknown_part", f"{unknown[0]}: no such part; send the file as 'file' and the "
                       "caption as 'text'", {"field": unknown[0]})
    uploads = request.files.getlist("file")
    if not uploads:
        raise ApiError(400, "no_file", "send the file as a multipart part named 'file'", {"field": "file"})
    if len(uploads) > 1:
        raise ApiError(422, "invalid_value", "file: send one file per message", {"field": "file"})
    content = uploads[0].read(max_bytes + 1)
    if not content:
        raise ApiError(422, "invalid_value", "file: is empty", {"field": "file"})
    if len(content) > max_bytes:
        raise ApiError(413, "file_too_large", f"file: at most {max_bytes} bytes", {"field": "file"})
    text = request.form.get("text", "")
    if len(text) > max_text or "\x00" in text:
        raise ApiError(422, "invalid_value", f"text: at most {max_text} characters, no NUL", {"field": "text"})
    name = (uploads[0].filename or "file").replace("\x00", "").rsplit("/", 1)[-1][:300] or "file"
    content_type = uploads[0].mimetype or ""
    if not content_type or content_type == "application/octet-stream":
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return text, OutboundFile(name, content_type[:100], content)
