"""Which version a start runs: the latest deployed, asked once per deploy in each process.

Versions are only ever added, so their count says whether the latest versions a process knows
are still the latest. A caller's own statement may read it (`COUNT`: the chat's row lock in
app.chats.lifecycle does) and say so (`seen`); a start later in that transaction then asks
nothing more. Without it, a start asks as before.
"""
from sqlalchemy import func, select

from app.bpmn import store
from app.engine import tx
from app.extensions import db
from app.models import ProcessVersion

COUNT = select(func.count(ProcessVersion.id)).scalar_subquery().label("deployed_versions")
_TX = "chatflow_deployed"


def seen(count: int) -> None:
    """The number of deployed versions as this transaction read it."""
    tx.scoped(db.session, _TX)["count"] = count


def changed() -> None:
    """This transaction deployed: what it read before is no longer the count."""
    tx.scoped(db.session, _TX).pop("count", None)


class Latest:
    """Process key -> (count of versions then, (id, version) of its latest), in one process."""

    def __init__(self):
        self._items: dict[str, tuple] = {}

    def ref(self, key: str):
        """(id, version) of the latest version of `key`; None if none is deployed."""
        count = tx.scoped(db.session, _TX).get("count")
        known = self._items.get(key)
        if count is not None and known is not None and known[0] == count:
            return known[1]
        ref = store.latest_version_ref(key)  # read after the count: never older than it says
        if count is not None and ref is not None:
            self._items[key] = (count, ref)
        return ref
