"""Where file bytes live: one interface, two stores. (Not an adapter: the database store is
made of a table, so this module may import `app.models`, `app.extensions` and `app.ports`.)

The database store (the default) keeps each file as a row of `stored_files`, so one pg_dump
backs up everything. The folder store (CHATFLOW_FILES_DIR) keeps them as files named by a
random key, for installations that would rather back up a folder. Either way the rows that
describe a file (attachments) are in the database and name it by its key.
"""
import os
import secrets
from pathlib import Path

from app.extensions import db
from app.models.chat import StoredFile
from app.ports import FileStore


class DatabaseStore(FileStore):
    def put(self, content, name, content_type):
        row = StoredFile(filename=name[:300], content_type=content_type[:100], content=content)
        db.session.add(row)
        db.session.flush()
        return str(row.id)

    def get(self, key):
        row = db.session.get(StoredFile, int(key)) if key.isdigit() else None
        return row.content if row is not None else None


class FolderStore(FileStore):
    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, content, name, content_type):
        key = secrets.token_hex(16)
        partial = self.folder / f".{key}.part"
        partial.write_bytes(content)
        os.replace(partial, self.folder / key)   # whole or not at all
        return key

    def get(self, key):
        if not key.isalnum():   # keys are ours (hex): nothing else names a file here
            return None
        path = self.folder / key
        return path.read_bytes() if path.is_file() else None


def build(config) -> FileStore:
    return FolderStore(config["FILES_DIR"]) if config.get("FILES_DIR") else DatabaseStore()
