"""PairStore on a real SQLite chat log at head: pairs, the outbox item, labels (upsert), agreement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select

from chatlog import ChatLog
from labeling import PairStore, UnknownPairError, agreement


def pair_row(turn_id: str, **kw: object) -> dict:
    row = {
        "pair_id": turn_id,
        "question": "How do I copy a file?",
        "context": ["shutil.copy(src, dst) copies the file src to dst."],
        "response_a": "Use shutil.copy [1].",
        "response_b": "Use os.copy.",
        "a_is_original": True,
        "strategy": "strict",
        "judge": {"preferred": "A", "score": 0.8, "reasoning": "r", "agent": "m/v", "order_consistent": True},
    }
    row.update(kw)
    return row


@pytest.fixture()
def turn_id(chatlog: ChatLog) -> str:
    return chatlog.start_turn(
        user_message="How do I copy a file?", status="ok", answer="Use shutil.copy [1]."
    )


def test_revision_0004_creates_the_three_tables_and_walks_down_and_up(tmp_path) -> None:
    from chatlog._migrate import downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    log = ChatLog(url)
    tables = set(inspect(log.engine).get_table_names())
    assert {"selections", "pairs", "labels"} <= tables
    downgrade(url, "0003")
    assert not {"selections", "pairs", "labels"} & set(inspect(log.engine).get_table_names())
    upgrade(url)
    assert {"selections", "pairs", "labels"} <= set(inspect(log.engine).get_table_names())
    log.close()


def test_saving_a_pair_enqueues_one_outbox_item_per_routed_sink(
    chatlog: ChatLog, store: PairStore, turn_id: str
) -> None:
    from chatlog.outbox import outbox

    chatlog.set_routes({"pair": ["argilla", "labelstudio"]})
    store.save_pair(pair_row(turn_id))
    store.save_pair(pair_row(turn_id, response_b="Use shutil.copy2 [1]."))  # an update, not a second pair
    with chatlog.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.sink, outbox.c.kind, outbox.c.key, outbox.c.payload, outbox.c.version)
        ).all()
    assert sorted((r.sink, r.kind, r.key) for r in rows) == [
        ("argilla", "pair", turn_id),
        ("labelstudio", "pair", turn_id),
    ]
    assert all(r.payload == {"pair_id": turn_id} and r.version == 2 for r in rows)
    got = store.get(turn_id)
    assert got is not None and got["response_b"] == "Use shutil.copy2 [1]."
    assert got["created_at"] <= got["updated_at"]
    assert store.count_pairs() == 1
    assert [p["pair_id"] for p in store.iter_pairs()] == [turn_id]


def test_a_failed_save_leaves_neither_pair_nor_outbox_item(
    chatlog: ChatLog, store: PairStore, turn_id: str
) -> None:
    from chatlog.outbox import outbox

    chatlog.set_routes({"pair": ["argilla"]})
    with pytest.raises(ValueError, match="judge.preferred"):
        store.save_pair(pair_row(turn_id, judge={"preferred": "first"}))
    with pytest.raises(ValueError, match="response_b"):
        store.save_pair(pair_row(turn_id, response_b=""))
    with chatlog.engine.connect() as conn:
        assert conn.execute(select(outbox)).first() is None
    assert store.get(turn_id) is None


def test_labels_upsert_per_pair_backend_annotator(store: PairStore, turn_id: str) -> None:
    store.save_pair(pair_row(turn_id))
    t1 = datetime(2026, 11, 30, 10, tzinfo=UTC)
    store.record_label(
        turn_id, backend="argilla", annotator="ann", choice="A", failure_type="none", labeled_at=t1
    )
    store.record_label(
        turn_id,
        backend="argilla",
        annotator="ann",
        choice="B",
        failure_type="hallucination",
        correction=" Fixed. ",
    )
    store.record_label(turn_id, backend="labelstudio", annotator="ann", choice="A")
    got = store.labels_for(turn_id)
    assert [(g["backend"], g["choice"], g["failure_type"], g["correction"]) for g in got] == [
        ("argilla", "B", "hallucination", "Fixed."),
        ("labelstudio", "A", "none", None),
    ]
    with pytest.raises(ValueError, match="choice"):
        store.record_label(turn_id, backend="argilla", annotator="x", choice="C")
    with pytest.raises(ValueError, match="failure_type"):
        store.record_label(turn_id, backend="argilla", annotator="x", choice="A", failure_type="typo")
    with pytest.raises(UnknownPairError):
        store.record_label("nope", backend="argilla", annotator="x", choice="A")


def test_agreement_known_values() -> None:
    groups = [
        [{"annotator": "u1", "choice": "A"}, {"annotator": "u2", "choice": "A"}],
        [{"annotator": "u1", "choice": "B"}, {"annotator": "u2", "choice": "B"}],
        [{"annotator": "u1", "choice": "A"}, {"annotator": "u2", "choice": "B"}],
        [{"annotator": "u1", "choice": "B"}, {"annotator": "u2", "choice": "B"}],
        [{"annotator": "u1", "choice": "A"}],  # one annotator: not counted
    ]
    got = agreement(groups)
    assert got["records"] == 4
    assert got["percent_agreement"] == pytest.approx(0.75)
    # p_o = 0.75; p_e = P(A)1 * P(A)2 + P(B)1 * P(B)2 = 0.5 * 0.25 + 0.5 * 0.75 = 0.5 -> kappa 0.5
    assert got["cohen_kappa"] == pytest.approx(0.5)
    three = agreement([[{"annotator": a, "choice": c} for a, c in (("x", "A"), ("y", "A"), ("z", "B"))]])
    assert three["percent_agreement"] == pytest.approx(1 / 3)
    assert agreement([]) == {"records": 0, "percent_agreement": None, "cohen_kappa": None}
    same = agreement([[{"annotator": "x", "choice": "A"}, {"annotator": "y", "choice": "A"}]])
    assert same["percent_agreement"] == 1.0 and same["cohen_kappa"] is None  # undefined with one class


def test_store_agreement_reads_labels_across_backends(store: PairStore, chatlog: ChatLog) -> None:
    ids = [chatlog.start_turn(user_message=f"q{i}", status="ok", answer="a") for i in range(2)]
    for tid in ids:
        store.save_pair(pair_row(tid))
    store.record_label(ids[0], backend="argilla", annotator="u1", choice="A")
    store.record_label(ids[0], backend="labelstudio", annotator="u2", choice="A")
    store.record_label(ids[1], backend="argilla", annotator="u1", choice="B")
    store.record_label(ids[1], backend="argilla", annotator="u2", choice="A")
    assert store.agreement()["records"] == 2
    assert store.agreement()["percent_agreement"] == pytest.approx(0.5)


def test_selections_record_reasons_and_update(store: PairStore, turn_id: str) -> None:
    store.record_selections({turn_id: ["thumbs_down"]}, "run-1")
    store.record_selections({turn_id: ["thumbs_down", "low_faithfulness"]}, "run-2")
    got = store.selection(turn_id)
    assert (
        got is not None and got["reasons"] == ["thumbs_down", "low_faithfulness"] and got["run_id"] == "run-2"
    )
    assert store.selected_ids() == {turn_id}
