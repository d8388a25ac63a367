"""Demo data for `chatflow serve --demo`: an admin token and the shipped processes."""
import secrets
from pathlib import Path

from sqlalchemy import select

from app import accounts
from app.extensions import db
from app.models import User


def seed(app, processes_dir: Path) -> list[str]:
    lines = []
    if db.session.scalars(select(User).where(User.login == "admin")).first() is None:
        token = app.config["BOOTSTRAP_ADMIN_TOKEN"] or secrets.token_urlsafe(24)
        accounts.create_user("admin", "Administrator", permissions=["CanManageChats"], token=token)
        lines.append(f"admin token: {token}")
    else:
        user = db.session.scalars(select(User).where(User.login == "admin")).one()
        lines.append(f"admin token (new): {accounts.issue_token(user)}")
    files = [(p.name, p.read_bytes()) for p in sorted(processes_dir.glob("*.bpmn"))]
    if files:
        for p in app.extensions["chatflow.engine"].deploy(files):
            lines.append(f"process {p['key']} version {p['version']}{' (new)' if p['new'] else ''}")
    db.session.commit()
    return lines
