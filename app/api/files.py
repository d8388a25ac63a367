"""Files of messages (attachments), for whoever may see their chat."""
import io

from flask import Blueprint, g, send_file

from app.api.auth import authenticate, is_admin
from app.api.contract import contract
from app.api.errors import ApiError
from app.chats import queries
from app.chats.messages import INLINE_TYPES
from app.services import services

bp = Blueprint("files", __name__, url_prefix="/api")
bp.before_request(authenticate)


@bp.get("/files/<int:file_id>")
@contract(media_type="application/octet-stream")
def get_file(file_id):
    """A message's file: admins, the chat's operator and operators of its queue; images, audio and
    video of common types inline, anything else as a download (never run in the browser)."""
    attachment = queries.readable_file(g.user, is_admin(g.user), file_id)
    if attachment.status != "stored":
        raise ApiError(409, "file_not_stored", f"file {file_id} is {attachment.status.replace('_', ' ')}",
                       {"status": attachment.status})
    content = services().files.get(attachment.storage_key or "")
    if content is None:
        raise ApiError(410, "file_gone", f"file {file_id} is no longer in the file store")
    inline = attachment.content_type in INLINE_TYPES
    response = send_file(io.BytesIO(content), mimetype=attachment.content_type if inline
                         else _download_type(attachment.content_type), as_attachment=not inline,
                         download_name=attachment.name or f"file-{file_id}", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Even opened directly, a file runs no script and loads nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


def _download_type(content_type: str) -> str:
    """The stored type when it is a plain type/subtype, else a generic download."""
    main, _, sub = content_type.partition("/")
    return content_type if main.isascii() and sub and all(c.isalnum() or c in "-+.;= " for c in main + sub) \
        else "application/octet-stream"
