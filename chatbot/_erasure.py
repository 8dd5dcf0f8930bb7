"""What deleting a conversation removed and what it could not, in words a user can check.

Pure: :func:`deletion_report` turns the counts of ``ChatLog.purge_conversation`` (rows per table,
``traces``, ``erase:<sink>``, ``sent:<sink>``, ``sqlite_scrubbed``) and the settings that say where
the app sends data into the message the UI shows and the API returns. It never says "nothing is
left" when a copy may be kept: traces exported to a store no sink erases, items a vendor already
received, and the byte-level leftovers of the database back end are each named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Vendors' names as users know them.
_VENDOR = {
    "langsmith": "LangSmith",
    "arize": "Arize",
    "argilla": "Argilla",
    "labelstudio": "Label Studio",
    "phoenix": "Phoenix",
}
_ROWS = (
    ("feedback", "feedback row"),
    ("evaluations", "evaluation"),
    ("selections", "labeling selection"),
    ("pairs", "labeling pair"),
    ("labels", "label"),
    ("outbox", "pending export"),
    ("drift_clusters", "drift example"),
)


@dataclass(frozen=True)
class DeletionReport:
    """What a deletion removed, what is being removed elsewhere, and what is kept where.

    Attributes:
        removed: sentences about what is gone now.
        pending: removals queued for another store (retried until it answers).
        kept: copies this app could not remove, each naming the store.
    """

    removed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-ready form (the API's ``report``)."""
        return {"removed": self.removed, "pending": self.pending, "kept": self.kept}

    def message(self) -> str:
        """One paragraph for the UI."""
        text = " ".join(self.removed + self.pending)
        if self.kept:
            text += " Kept elsewhere: " + " ".join(self.kept)
        else:
            text += " No other copy is kept by the app's stores."
        return text


def _vendor(sink: str) -> str:
    return _VENDOR.get(sink, sink)


def _removed(counts: Mapping[str, int]) -> str:
    turns = counts.get("turns", 0)
    extra = [f"{counts[k]} {label}{'s' if counts[k] != 1 else ''}" for k, label in _ROWS if counts.get(k)]
    more = f", with {', '.join(extra)}" if extra else ""
    plural = "s" if turns != 1 else ""
    return f"Conversation deleted: {turns} question{plural} and answers removed from the chat log{more}."


def _storage(counts: Mapping[str, int]) -> tuple[list[str], list[str]]:
    if "sqlite_scrubbed" in counts:  # only a SQLite chat log reports it
        if counts["sqlite_scrubbed"]:
            return ["Their text was overwritten in the chat log's database and WAL files."], []
        return [], [
            "the chat log's WAL file (a reader held it): the text stays there until its next checkpoint."
        ]
    return [], [
        "the chat log's PostgreSQL data files hold the deleted rows' bytes until VACUUM marks the space "
        "free and new rows overwrite it (VACUUM FULL rewrites the table at once), and WAL archives or "
        "backups keep them until they expire."
    ]


def _traces(counts: Mapping[str, int], settings: Any) -> tuple[list[str], list[str]]:
    """Pending and kept sentences about the turns' traces."""
    n = counts.get("traces", 0)
    exported = bool(getattr(settings, "telemetry", True)) and (
        bool(settings.otlp_endpoint) or bool(settings.collector)
    )
    if not n or not exported:
        return [], []
    what = "with the questions and answers" if settings.trace_content else "ids and timings, no text"
    pending: list[str] = []
    kept: list[str] = []
    if counts.get("erase:phoenix"):
        pending.append(
            f"Its {n} trace{'s' if n != 1 else ''} are being deleted from Phoenix (within seconds while "
            "Phoenix is up, retried until it is, and once more a minute later for late spans); Phoenix's "
            "own SQLite files (its WAL) keep their bytes until Phoenix overwrites that space."
        )
    for where in (settings.traces_endpoint, settings.otlp_endpoint):
        if where:
            kept.append(f"its {n} trace(s) ({what}) sent to {where}: delete them there.")
    if not pending and not kept:
        kept.append(
            f"its {n} trace(s) ({what}) sent through the local collector: no trace store to delete "
            "them from is configured (RAGLOOP_PHOENIX_URL)."
        )
    return pending, kept


def deletion_report(counts: Mapping[str, int], settings: Any) -> DeletionReport:
    """Describe a deletion truthfully.

    Args:
        counts: ``ChatLog.purge_conversation``'s result.
        settings: the app's :class:`~ragloop.settings.Settings` (where data is sent).

    Returns:
        The report; :meth:`DeletionReport.message` is the UI text.
    """
    report = DeletionReport(removed=[_removed(counts)])
    scrubbed, leftover = _storage(counts)
    report.removed.extend(scrubbed)
    report.kept.extend(leftover)
    pending, kept = _traces(counts, settings)
    report.pending.extend(pending)
    report.kept.extend(kept)
    for key, n in sorted(counts.items()):
        if key.startswith("sent:") and n:
            report.kept.append(
                f"{n} item(s) already delivered to {_vendor(key[5:])} before the deletion: delete them there."
            )
    return report
