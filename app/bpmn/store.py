"""Deployed process versions: store each changed file once per key, parse each version once."""
from collections import OrderedDict
from threading import Lock

from sqlalchemy import select

from app.bpmn.errors import BpmnRefused
from app.bpmn.loader import LoadedFile, LoadedProcess, load, parse_specs
from app.extensions import db
from app.models import ProcessVersion


def validate_all(files: list[tuple[str, bytes]], operations: set[str] | None) -> list[LoadedFile]:
    """Load every file; refuse the whole batch with all problems if any file is refused."""
    loaded, problems = [], []
    for filename, xml in files:
        try:
            loaded.append(load(xml, filename, operations))
        except BpmnRefused as e:
            problems.extend(e.problems)
    if problems:
        raise BpmnRefused(problems)
    return loaded


def deploy(files: list[tuple[str, bytes]], operations: set[str] | None, cache: "SpecCache",
           missing_only: bool = False) -> list[dict]:
    """Validate and store files; a key gets a new version only when its file's content changed.

    With `missing_only` (demo seeding) a key that has any version keeps it, changed file or not:
    what an analyst deployed is never replaced by a shipped file.
    Returns one `{"key", "version", "new"}` per executable process. The caller commits.
    """
    result = []
    for (filename, xml), loaded in zip(files, validate_all(files, operations)):
        for process in loaded.processes:
            latest = latest_version(process.key)
            if latest is not None and (missing_only or latest.content_hash == loaded.content_hash):
                result.append({"key": process.key, "version": latest.version, "new": False})
                continue
            row = ProcessVersion(key=process.key, version=(latest.version + 1) if latest else 1,
                                 name=process.name, filename=filename, content_hash=loaded.content_hash,
                                 xml=xml.decode("utf-8"))
            db.session.add(row)
            db.session.flush()
            cache.put(row.id, process)
            result.append({"key": process.key, "version": row.version, "new": True})
    return result


def latest_version(key: str) -> ProcessVersion | None:
    return db.session.scalars(select(ProcessVersion).where(ProcessVersion.key == key)
                              .order_by(ProcessVersion.version.desc()).limit(1)).first()


def latest_version_ref(key: str):
    """(id, version) of the latest version of `key`, without its XML; None if none is deployed."""
    return db.session.execute(select(ProcessVersion.id, ProcessVersion.version).where(ProcessVersion.key == key)
                              .order_by(ProcessVersion.version.desc()).limit(1)).first()


class SpecCache:
    """Parsed versions (LoadedProcess) by version id, so no request parses a version's XML twice."""

    def __init__(self, size: int = 256):
        self.size, self._items, self._lock = size, OrderedDict(), Lock()
        self._numbers: dict[int, int] = {}  # version id -> its number, which never changes once deployed

    def put(self, version_id: int, specs: LoadedProcess):
        with self._lock:
            self._items[version_id] = specs
            self._items.move_to_end(version_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, version_id: int) -> LoadedProcess:
        """The parsed version; its row (and XML) is read only when it is not cached yet."""
        with self._lock:
            specs = self._items.get(version_id)
            if specs is not None:
                self._items.move_to_end(version_id)
                return specs
        version = db.session.get(ProcessVersion, version_id)
        specs = parse_specs(version.xml.encode("utf-8"), version.filename, version.key)
        self.put(version_id, specs)
        self._numbers[version_id] = version.version
        return specs

    def version_number(self, version_id: int) -> int:
        """A version's number (an answer about an instance names it), read once."""
        number = self._numbers.get(version_id)
        if number is None:
            number = self._numbers[version_id] = db.session.scalar(
                select(ProcessVersion.version).where(ProcessVersion.id == version_id))
        return number
