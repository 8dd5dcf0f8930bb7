"""The labeling loop: flagged chats become judged preference pairs, human labels and TRL datasets.

Public API:
    PairStore: the ``selections``, ``pairs`` and ``labels`` tables (labeling backends read and write it).
    selections, pairs, labels: the tables; CHOICES, FAILURE_TYPES: their allowed values.
    UnknownPairError: a label named a pair the store does not hold.
    agreement: percent agreement and Cohen's kappa of annotators' choices.
    LabelingLoop, LoopReport: select -> candidates -> judge -> save.
    select, Selection, Signals, REASONS: selection as pure functions on chat-log rows.
    detect, ImplicitVerdict: the implicit-feedback detector for follow-up messages.
    CandidateGenerator, STRATEGIES: alternative answers.
    PairwiseJudge, Verdict, JUDGE_PROMPT_VERSION: the RLAIF-style pairwise judge.
    export, ExportReport, FORMATS: DPO / KTO / SFT export in TRL's formats with a dataset card.
    start_labeling_ui: start the local labeling UI (Argilla, or Label Studio) for ``ragloop run``.

Heavy pieces (the models, Dagster) load only when used.
"""

from labeling._candidates import STRATEGIES, CandidateGenerator
from labeling._export import FORMATS, ExportReport, export
from labeling._implicit import ImplicitVerdict, detect
from labeling._judge import JUDGE_PROMPT_VERSION, PairwiseJudge, Verdict
from labeling._loop import LabelingLoop, LoopReport
from labeling._select import REASONS, Selection, Signals, select
from labeling._store import (
    CHOICES,
    FAILURE_TYPES,
    PairStore,
    UnknownPairError,
    agreement,
    labels,
    pairs,
    selections,
)
from labeling._ui import start_labeling_ui

__all__ = [
    "CHOICES",
    "FAILURE_TYPES",
    "FORMATS",
    "JUDGE_PROMPT_VERSION",
    "REASONS",
    "STRATEGIES",
    "CandidateGenerator",
    "ExportReport",
    "ImplicitVerdict",
    "LabelingLoop",
    "LoopReport",
    "PairStore",
    "PairwiseJudge",
    "Selection",
    "Signals",
    "UnknownPairError",
    "Verdict",
    "agreement",
    "detect",
    "export",
    "labels",
    "pairs",
    "select",
    "selections",
    "start_labeling_ui",
]
