"""Task code run in this process without Airflow around it, as the bench's flows and the tests run it:
a task instance that keeps its XComs, and one botocore model loader for every session.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any


@functools.cache
def _shared_loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


def share_botocore_loader(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Make every botocore session created from now on use one model loader.

    Every hook builds a new botocore session, and each session parses the large EC2 service model
    again (~0.3 s of CPU); a real task process pays that once. The loader only reads and caches the
    model files, so sessions may share it: no AWS call changes. ``patch`` is ``setattr`` (for good)
    or a pytest ``monkeypatch.setattr`` (undone after the test).
    """
    import botocore.session

    loader = _shared_loader()
    patch(botocore.session, "create_loader", lambda *args, **kwargs: loader)


class TaskInstance:
    """What task code asks of ``context["ti"]``: XCom pushes and pulls, kept by task id.

    Tasks given the same ``xcoms`` see each other's XComs; what Airflow would store must be JSON.
    """

    def __init__(self, task_id: str = "task", xcoms: dict[tuple[str, str], Any] | None = None) -> None:
        self.task_id = task_id
        self.xcoms = {} if xcoms is None else xcoms

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcoms[self.task_id, key] = json.loads(json.dumps(value))

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get((task_ids or self.task_id, key))

    @property
    def xcom(self) -> dict[str, Any]:
        """This task's own XComs, by key."""
        return {key: value for (task_id, key), value in self.xcoms.items() if task_id == self.task_id}
