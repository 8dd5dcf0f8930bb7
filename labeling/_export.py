"""Export labeled data in TRL's formats: DPO preference pairs, KTO unpaired rows, SFT corrections.

Every format is written twice, in TRL's *standard* form (strings) and its *conversational* form
(lists of ``{"role", "content"}`` messages), with the retrieved context inside the prompt exactly
as the chat model saw it. The output folder is JSONL files plus a dataset card (``README.md``)
whose YAML header declares the configs, so ``datasets.load_dataset(folder, "conversational")``
reads it::

    out/README.md
    out/standard/train.jsonl         human-confirmed rows
    out/standard/rlaif.jsonl         AI-judged pairs nobody labeled (only with include_ai)
    out/conversational/train.jsonl
    out/conversational/rlaif.jsonl

Pure row builders first; :func:`export` is the shell that reads the chat log and writes files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chatlog import redact_tree
from labeling._candidates import GROUNDED_PROMPT

FORMATS = ("dpo", "kto", "sft")
#: The row keys that hold user or model text: redacted on the way out (ids, labels untouched).
TEXT_FIELDS = ("question", "context", "chosen", "rejected", "completion")
#: The source of a row: a human annotator (or rater) confirmed it, or only the AI judge did.
HUMAN, AI = "human", "ai"


def prompt_text(question: str, passages: Sequence[str]) -> str:
    """The standard-form prompt: instruction, numbered sources, question."""
    block = "\n\n".join(f"[{i}]\n{p.strip()}" for i, p in enumerate(passages, 1)) or "(no sources)"
    return f"{GROUNDED_PROMPT}\n\nSources:\n{block}\n\nQuestion: {question}"


def prompt_messages(question: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The conversational-form prompt: the system instruction and the user's sources + question."""
    block = "\n\n".join(f"[{i}]\n{p.strip()}" for i, p in enumerate(passages, 1)) or "(no sources)"
    return [
        {"role": "system", "content": GROUNDED_PROMPT},
        {"role": "user", "content": f"Sources:\n{block}\n\nQuestion: {question}"},
    ]


def human_choice(labels: Sequence[Mapping[str, Any]]) -> str | None:
    """The majority choice of a pair's annotators (``A``, ``B`` or ``tie``); None if none or split evenly."""
    votes = Counter(str(label["choice"]) for label in labels)
    if not votes:
        return None
    (top, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        return None
    return top


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _meta(pair: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {
        "pair_id": pair["pair_id"],
        "turn_id": pair["pair_id"],
        "source": source,
        "strategy": pair.get("strategy"),
    }


def dpo_rows(
    pair: Mapping[str, Any], labels: Sequence[Mapping[str, Any]], include_ai: bool
) -> list[dict[str, Any]]:
    """At most one DPO row (standard and conversational variants share it) for a pair.

    Args:
        pair: a ``pairs`` row.
        labels: its human labels.
        include_ai: use the judge's verdict when no human labeled the pair.

    Returns:
        ``[{"source", "pair_id", "strategy", "question", "context", "chosen", "rejected"}]`` or ``[]``
        when the pair is a tie, has conflicting labels, or is AI-only and ``include_ai`` is off.
    """
    choice, source = human_choice(labels), HUMAN
    if choice is None and not labels and include_ai:
        choice, source = (pair.get("judge") or {}).get("preferred"), AI
    if choice not in ("A", "B"):
        return []
    a, b = pair["response_a"], pair["response_b"]
    chosen, rejected = (a, b) if choice == "A" else (b, a)
    if not trainable_pair(chosen, rejected):
        return []
    return [
        {
            **_meta(pair, source),
            "question": pair["question"],
            "context": list(pair["context"] or []),
            "chosen": chosen,
            "rejected": rejected,
        }
    ]


def trainable_pair(chosen: Any, rejected: Any) -> bool:
    """True when TRL can learn a preference from the two answers: both non-blank strings, not equal.

    A blank answer (the model said nothing) has no tokens to score, and two answers equal but for
    surrounding blanks teach no preference; such pairs are left out of every export.
    """
    ok = isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() and rejected.strip()
    return bool(ok) and chosen.strip() != rejected.strip()


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two exported rows the same training example: prompt parts and answers."""
    keys = ("question", "chosen", "rejected", "completion", "label")
    return (*(row.get(k) for k in keys), tuple(row.get("context") or ()))


def unique_rows(rows: Iterable[Mapping[str, Any]], seen: set[tuple[Any, ...]] | None = None) -> list[Any]:
    """``rows`` without repeats of the same example (:func:`row_key`), first occurrence kept, in order.

    Args:
        rows: exported rows.
        seen: keys already written (updated in place), so a second split repeats none of the first.
    """
    seen = set() if seen is None else seen
    out = []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def kto_rows(
    pair: Mapping[str, Any], labels: Sequence[Mapping[str, Any]], include_ai: bool
) -> list[dict[str, Any]]:
    """KTO's unpaired rows from a pair: the chosen response desirable, the rejected one not."""
    out = []
    for row in dpo_rows(pair, labels, include_ai):
        base = {k: row[k] for k in ("pair_id", "turn_id", "source", "strategy", "question", "context")}
        out.append({**base, "completion": row["chosen"], "label": True})
        out.append({**base, "completion": row["rejected"], "label": False})
    return out


def thumb_rows(turn: Mapping[str, Any], values: Sequence[int]) -> list[dict[str, Any]]:
    """A KTO row from a rated turn: thumbs-up (and no thumbs-down) desirable, any thumbs-down not."""
    answer = (turn.get("answer") or "").strip()
    if not answer or not values:
        return []
    label = min(values) > 0
    question = turn.get("standalone_question") or turn.get("user_message") or ""
    context = [str(c.get("text") or "") for c in (turn.get("retrieved") or []) if c.get("text")]
    return [
        {
            "pair_id": None,
            "turn_id": turn["turn_id"],
            "source": HUMAN,
            "strategy": "thumbs",
            "question": question,
            "context": context,
            "completion": answer,
            "label": label,
        }
    ]


def sft_rows(pair: Mapping[str, Any], labels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One SFT row per distinct correction an annotator wrote."""
    seen: dict[str, None] = {}
    for label in labels:
        text = (label.get("correction") or "").strip()
        if text:
            seen.setdefault(text, None)
    return [
        {
            **_meta(pair, HUMAN),
            "question": pair["question"],
            "context": list(pair["context"] or []),
            "completion": t,
        }
        for t in seen
    ]


def to_standard(row: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's standard form: ``prompt`` and the answers as strings, plus our provenance columns."""
    out = {k: v for k, v in row.items() if k not in ("question", "context")}
    return {"prompt": prompt_text(row["question"], row["context"]), **out}


def to_conversational(row: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's conversational form: ``prompt`` as messages, each answer as an assistant message."""
    out: dict[str, Any] = {"prompt": prompt_messages(row["question"], row["context"])}
    for k, v in row.items():
        if k in ("question", "context"):
            continue
        out[k] = _assistant(v) if k in ("chosen", "rejected", "completion") else v
    return out


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` value for ``n`` rows."""
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


@dataclass
class ExportReport:
    """What an export wrote."""

    format: str
    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    """split -> rows (``train`` human-confirmed, ``rlaif`` AI-only)."""
    date_range: tuple[str | None, str | None] = (None, None)
    agreement: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the command line."""
        parts = ", ".join(f"{n} {split}" for split, n in self.counts.items())
        return f"{self.format}: {parts or 'no rows'} -> {self.out}"


def annotation_creators(counts: Mapping[str, int]) -> list[str]:
    """The card's ``annotations_creators`` for the rows per split (see :func:`dataset_card`)."""
    creators = (["expert-generated"] if counts.get("train") else []) + (
        ["machine-generated"] if counts.get("rlaif") else []
    )
    return creators or ["no-annotation"]


def dataset_card(
    fmt: str,
    counts: Mapping[str, int],
    date_range: tuple[str | None, str | None],
    agreement: Mapping[str, Any],
    *,
    license_id: str,
    source: str,
) -> str:
    """The README.md with the Hugging Face YAML header (configs, license, task and size categories).

    ``annotations_creators`` lists what made the labels of the rows written: ``expert-generated``
    when the ``train`` split (human labels: annotators, users' thumbs) has rows, ``machine-generated``
    when the ``rlaif`` split (AI judge suggestions nobody confirmed) has rows; ``no-annotation`` for
    an export without rows. The body gives the rows per creator and the agreement.
    """
    splits = [s for s in ("train", "rlaif") if counts.get(s)] or ["train"]
    creators = annotation_creators(counts)
    lines = ["---", f"license: {license_id}", "language:", "- en", "task_categories:", "- text-generation"]
    lines += ["- question-answering", "size_categories:", f"- {size_category(sum(counts.values()))}"]
    lines += ["annotations_creators:", *[f"- {c}" for c in creators], "source_datasets:", "- original"]
    lines += ["tags:", "- dpo" if fmt == "dpo" else f"- {fmt}", "- rlhf", "- trl", "- rag"]
    if counts.get("rlaif"):
        lines.append("- rlaif")
    lines += [f"pretty_name: ragloop {fmt} export", "configs:"]
    for i, config in enumerate(("standard", "conversational")):
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {s}\n    path: {config}/{s}.jsonl" for s in splits]
        if i == 0:
            lines.append("  default: true")
    lines.append("---")
    kappa = agreement.get("cohen_kappa")
    pct = agreement.get("percent_agreement")
    body = [
        f"# ragloop {fmt.upper()} export",
        "",
        f"Source: the ragloop chat log ({source}): answers users flagged (thumbs-down, implicit feedback,",
        "low faithfulness, drift) paired with an alternative answer, labeled by annotators.",
        "",
        f"- Date range: {date_range[0] or 'n/a'} to {date_range[1] or 'n/a'} (UTC, pair or turn creation)",
        f"- Rows: {', '.join(f'{s} {counts.get(s, 0)}' for s in ('train', 'rlaif'))}",
        f"- Annotation creators: expert-generated (human labels) {counts.get('train', 0)} rows, "
        f"machine-generated (AI judge suggestions, RLAIF) {counts.get('rlaif', 0)} rows",
        "- Annotations: `train` is human-confirmed (annotators' majority choice, or a user's thumbs);",
        "  `rlaif` holds AI-judged pairs no human labeled (the RLAIF set, `source = ai`): judge suggestions,",
        "  not ground truth.",
        f"- Inter-annotator agreement on {agreement.get('records', 0)} doubly-labeled pairs: "
        f"percent {'n/a' if pct is None else f'{pct:.3f}'}, "
        f"Cohen's kappa {'n/a' if kappa is None else f'{kappa:.3f}'}",
        "",
        "Formats follow TRL: `standard` holds strings, `conversational` lists of role/content messages;",
        "the prompt includes the retrieved sources the chat model answered from.",
        "",
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(body)


def redacted_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with PII and secrets masked in its text fields (:data:`TEXT_FIELDS`)."""
    return {k: redact_tree(v) if k in TEXT_FIELDS and v is not None else v for k, v in row.items()}


def write_rows(out: Path, split: str, rows: Iterable[Mapping[str, Any]], redact: bool = True) -> int:
    """Write ``rows`` as ``standard/<split>.jsonl`` and ``conversational/<split>.jsonl``; the count.

    With ``redact`` (the default, ``RAGLOOP_REDACT``) e-mails, phones, cards and keys are masked.
    """
    n = 0
    (out / "standard").mkdir(parents=True, exist_ok=True)
    (out / "conversational").mkdir(parents=True, exist_ok=True)
    with (
        (out / "standard" / f"{split}.jsonl").open("w", encoding="utf-8") as std,
        (out / "conversational" / f"{split}.jsonl").open("w", encoding="utf-8") as conv,
    ):
        for row in rows:
            row = redacted_row(row) if redact else row
            std.write(json.dumps(to_standard(row), ensure_ascii=False, default=str) + "\n")
            conv.write(json.dumps(to_conversational(row), ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def export(
    store: Any,
    fmt: str,
    out: Path,
    *,
    include_ai: bool = False,
    license_id: str = "other",
    since: datetime | None = None,
    redact: bool = True,
) -> ExportReport:
    """Export the chat log's labeled data in ``fmt`` (``dpo``, ``kto`` or ``sft``) into ``out``.

    Args:
        store: a :class:`labeling.PairStore`.
        fmt: the format.
        out: the output folder (created; files of the same names are replaced).
        include_ai: also write AI-only pairs, as the ``rlaif`` split.
        license_id: the card's license.
        since: only pairs updated (and turns created) at or after this time.
        redact: mask e-mails, phone and card numbers and keys in every text (``RAGLOOP_REDACT``);
            the chat log keeps the original.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    labels = store.all_labels()
    human: list[dict[str, Any]] = []
    machine: list[dict[str, Any]] = []
    stamps: list[datetime] = []
    for pair in store.iter_pairs(since=since):
        got = labels.get(pair["pair_id"], [])
        if fmt == "sft":
            rows = sft_rows(pair, got)
        elif fmt == "kto":
            rows = kto_rows(pair, got, include_ai)
        else:
            rows = dpo_rows(pair, got, include_ai)
        if rows:
            stamps.append(pair["created_at"])
        for row in rows:
            (human if row["source"] == HUMAN else machine).append(row)
    if fmt == "kto":
        seen = {(r["pair_id"], r["completion"]) for r in human}
        for turn, values in _rated_turns(store.chatlog, since):
            rows = [r for r in thumb_rows(turn, values) if (r["turn_id"], r["completion"]) not in seen]
            if rows:
                stamps.append(turn["created_at"])
            human += rows
    human, machine = unique_rows(human), unique_rows(machine)  # a repeated example is written once
    counts = {"train": write_rows(out, "train", human, redact)}
    if include_ai:
        counts["rlaif"] = write_rows(out, "rlaif", machine, redact)
    else:
        for form in ("standard", "conversational"):
            (out / form / "rlaif.jsonl").unlink(missing_ok=True)
    span = (min(stamps).isoformat(), max(stamps).isoformat()) if stamps else (None, None)
    agreement = store.agreement()
    card = dataset_card(fmt, counts, span, agreement, license_id=license_id, source=_safe_source(store))
    (out / "README.md").write_text(card, encoding="utf-8")
    return ExportReport(fmt, out, counts, span, agreement)


def _safe_source(store: Any) -> str:
    url = str(getattr(store.chatlog, "url", "") or "")
    return url.split("://", 1)[0] or "chat log"


def _rated_turns(chatlog: Any, since: datetime | None) -> Iterable[tuple[dict[str, Any], list[int]]]:
    """Turns with feedback and their ratings (+1/-1), oldest first."""
    from sqlalchemy import select

    from chatlog import feedback, turns

    cols = [turns.c.turn_id, turns.c.created_at, turns.c.user_message, turns.c.standalone_question]
    query = (
        select(*cols, turns.c.answer, turns.c.retrieved, feedback.c.value)
        .join(feedback, feedback.c.turn_id == turns.c.turn_id)
        .order_by(turns.c.created_at, turns.c.turn_id)
    )
    if since is not None:
        query = query.where(turns.c.created_at >= since)
    current: dict[str, Any] | None = None
    values: list[int] = []
    with chatlog.engine.connect() as conn:
        for r in conn.execution_options(yield_per=2000).execute(query).mappings():
            if current is not None and current["turn_id"] != r["turn_id"]:
                yield current, values
                current = None
            if current is None:
                current, values = {k: r[k] for k in r.keys() if k != "value"}, []
            values.append(int(r["value"]))
    if current is not None:
        yield current, values
