"""The member tasks of generic SPoT's source mixtures (Vu et al., ACL 2022, Table 1), as data.

Why its own module: the Table-1 mixtures need ~45 tasks beyond GLUE and SuperGLUE (NLI, sentiment,
MRQA, RAINBOW, translation, summarization, GEM), and each must be exactly the reference's task —
the same TFDS dataset and version, the same text format, postprocessor and metrics — so that a
source prompt trained here is the paper's. This module only *describes* them (`Spec`: plain
values and a preprocessor from `preprocessors`); `catalog` turns every spec into a registered `Task`
at import, so there is no import cycle and the catalogue reads as one table per family.

References, per family (google-research/prompt-tuning, `prompt_tuning/spot/data/`; the RAINBOW,
sentiment, similarity and GEM files are in its history, commit fbfab63, "[SPoT] add RAINBOW tasks"):
- NLI: nli.py (`spot_anli_r1_v010`, `spot_doc_nli_v100`, `spot_snli_v110`) + T5's MNLI, QNLI, RTE, CB.
- Paraphrase / similarity: similarity.py (`spot_cxc_v100`) + T5's MRPC, QQP, STS-B.
- Sentiment: sentiment.py (`spot_goemotions_v010`, `spot_imdb_reviews_v100`, `spot_sentiment140_v100`,
  `spot_yelp_polarity_reviews_v020`, `spot_cr_v100`).
- MRQA: mrqa.py (`spot_mrqa_<dataset>_v100`, six in-domain datasets).
- RAINBOW: rainbow.py (`spot_rainbow_<dataset>_v...` for CosmosQA, HellaSwag, PIQA, WinoGrande;
  `rom_rainbow_anli_v100` (αNLI) and `rom_rainbow_socialiqa_v100` from local TSV files).
- Translation: T5's `wmt_t2t_ende_v003`, `wmt15_enfr_v003`, `wmt16_enro_v003` (t5/data/tasks.py 0.9.4).
- Summarization: summarization.py (`spot_<dataset>_v...`, seven datasets).
- GEM: gem.py (`spot_gem_<dataset>_v110`, eight datasets).
Where the reference cannot run as written, the spec says what it does instead (`note`).
tests/test_spot_formats.py checks every TFDS-read task against the reference's own outputs
(tests/fixtures/spot_reference.json, made by tools/t5_reference/make_spot_fixture.py).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from spot_jax.data import preprocessors as pp


@dataclasses.dataclass(frozen=True)
class Spec:
  """One task as the reference defines it. `tfds`: TFDS names (versions pinned by
  `TFDS_VERSIONS` when not given); `local`: (directory, ((column, description), ...)) for a task the
  reference reads from its own files. `reference`: the reference task's name."""

  name: str
  preprocessor: pp.Preprocessor
  metric_names: tuple[str, ...]
  reference: str
  tfds: tuple[str, ...] = ()
  local: Optional[tuple[str, tuple[tuple[str, str], ...]]] = None
  postprocessor: str = "text"
  label_words: Optional[tuple[str, ...]] = None
  split_map: tuple[tuple[str, str], ...] = ()
  eval_split: str = "validation"
  note: str = ""

  @property
  def description(self) -> str:
    return f"{self.reference}'s format and metrics." + (f" {self.note}" if self.note else "")


# TFDS versions the references pin: (version, where the pin comes from). Merged into
# `catalog.TFDS_VERSIONS`. Two pins cannot be built by TFDS 4.9.10, which knows only a newer version:
# those use TFDS's version (as winogrande does) and say so.
TFDS_VERSIONS: dict[str, tuple[str, str]] = {
    "goemotions": ("0.1.0", "prompt-tuning spot/data/sentiment.py"),
    "imdb_reviews": ("1.0.0", "prompt-tuning spot/data/sentiment.py (imdb_reviews/plain_text)"),
    "sentiment140": ("1.0.0", "prompt-tuning spot/data/sentiment.py"),
    "mrqa": ("1.0.0", "prompt-tuning spot/data/mrqa.py"),
    "wmt_t2t_translate": ("1.0.0", "T5's wmt_t2t_ende_v003 (t5/data/tasks.py)"),
    "wmt15_translate": ("1.0.0", "T5's wmt15_enfr_v003 (t5/data/tasks.py)"),
    "wmt16_translate": ("1.0.0", "T5's wmt16_enro_v003 (t5/data/tasks.py)"),
    "aeslc": ("1.0.0", "prompt-tuning spot/data/summarization.py"),
    "billsum": ("3.0.0", "prompt-tuning spot/data/summarization.py"),
    "gigaword": ("1.2.0", "prompt-tuning spot/data/summarization.py"),
    "cnn_dailymail": ("3.4.0", "TFDS 4.9.10's only version (also what T5's cnn_dailymail_v002 reads); "
                               "prompt-tuning spot/data/summarization.py pins 3.2.0, which current TFDS "
                               "cannot build (set_tfds_version to use a copy)"),
    "multi_news": ("2.1.0", "TFDS 4.9.10's only version; prompt-tuning spot/data/summarization.py pins "
                            "1.0.0, which current TFDS cannot build (set_tfds_version to use a copy)"),
    "samsum": ("1.0.0", "prompt-tuning spot/data/summarization.py"),
    "newsroom": ("1.0.0", "prompt-tuning spot/data/summarization.py"),
    "gem": ("1.1.0", "prompt-tuning spot/data/gem.py"),
}

NLI3 = ("entailment", "neutral", "contradiction")
POS_NEG = ("negative", "positive")
_ACC = ("accuracy",)

# ----------------------------------------------------------------------------- NLI (nli.py)
NLI = (
    *(Spec(f"anli_r{r}", pp.spot_classification(f"anli_r{r}", "hypothesis", "context", NLI3), _ACC,
           f"spot_anli_r{r}_v010", tfds=(f"anli/r{r}",), postprocessor="label", label_words=NLI3,
           note="One round of ANLI; the paper's ANLI is the three rounds (anli_r1, anli_r2, anli_r3).")
      for r in (1, 2, 3)),
    Spec("docnli", pp.spot_classification("doc_nli", "hypothesis", "premise", ("not_entailment", "entailment")),
         _ACC, "spot_doc_nli_v100", tfds=("doc_nli",), postprocessor="label",
         label_words=("not_entailment", "entailment")),
    Spec("snli", pp.spot_classification("snli", "hypothesis", "premise", NLI3), _ACC, "spot_snli_v110",
         tfds=("snli",), postprocessor="label", label_words=NLI3,
         note="Rows without a gold label (-1) give no example."),
)

# ----------------------------------------------------------------------------- similarity (similarity.py)
PARAPHRASE = (
    Spec("cxc", pp.spot_similarity("cxc", id_key="index"), _ACC, "spot_cxc_v100",
         local=("cxc", (("sentence1", "str"), ("sentence2", "str"), ("label", "similarity 0-5"))),
         postprocessor="float",
         note="Not in TFDS: $SPOT_JAX_DATA_DIR/cxc/{train,validation}.{tsv,jsonl} with columns sentence1, "
              "sentence2, label (and optionally index). Target: the label rounded to 0.2 as STS-B; the "
              "reference scores it by accuracy of the rounded value."),
)

# ----------------------------------------------------------------------------- sentiment (sentiment.py)
SENTIMENT = (
    Spec("goemotions", pp.goemotions(), _ACC, "spot_goemotions_v010", tfds=("goemotions",),
         note="Multi-label: the target lists the true emotions; accuracy = exact match of that list. (The "
              "reference's `if example[feature]` is traced by tf.data into both branches, so as run it lists "
              "all 28 emotions for every example; this keeps only the true ones, as it means to.)"),
    Spec("imdb", pp.spot_classification("imdb_reviews", "text", None, POS_NEG), _ACC, "spot_imdb_reviews_v100",
         tfds=("imdb_reviews/plain_text",), postprocessor="label", label_words=POS_NEG, eval_split="test",
         note="TFDS has no validation split: eval = test."),
    Spec("sentiment140", pp.sentiment140(), _ACC, "spot_sentiment140_v100", tfds=("sentiment140",),
         postprocessor="label", label_words=("negative", "neutral", "positive"), eval_split="test",
         note="TFDS has no validation split: eval = test."),
    Spec("yelp_polarity", pp.spot_classification("yelp_polarity_reviews", "text", None, POS_NEG), _ACC,
         "spot_yelp_polarity_reviews_v020", tfds=("yelp_polarity_reviews",), postprocessor="label",
         label_words=POS_NEG, eval_split="test", note="Yelp-2; TFDS has no validation split: eval = test."),
    Spec("cr", pp.spot_classification("cr", "text", None, POS_NEG), _ACC, "spot_cr_v100",
         local=("cr", (("text", "str"), ("label", "0 = negative, 1 = positive"))), postprocessor="label",
         label_words=POS_NEG,
         note="Not in TFDS: $SPOT_JAX_DATA_DIR/cr/{train,validation}.{tsv,jsonl} with columns text, label."),
)

# ----------------------------------------------------------------------------- MRQA (mrqa.py)
MRQA_DATASETS = ("squad", "news_qa", "trivia_qa", "search_qa", "hotpot_qa", "natural_questions")
MRQA = tuple(
    Spec(f"mrqa_{d}", pp.mrqa(d), ("squad",), f"spot_mrqa_{d}_v100", tfds=(f"mrqa/{d}",), postprocessor="qa",
         note="SQuAD's format with the task name in front; EM/F1 max over the padded answers.")
    for d in MRQA_DATASETS)

# ----------------------------------------------------------------------------- RAINBOW (rainbow.py)
RAINBOW = (
    Spec("abductive_nli", pp.spot_multiple_choice("abductive_nli", ("obs1", "obs2", "hyp1", "hyp2")), _ACC,
         "rom_rainbow_anli_v100",
         local=("abductive_nli", (("obs1", "str"), ("obs2", "str"), ("hyp1", "str"), ("hyp2", "str"),
                                  ("label", "index into [obs1, obs2, hyp1, hyp2]: 2 = hyp1, 3 = hyp2"))),
         note="αNLI; not in TFDS: $SPOT_JAX_DATA_DIR/abductive_nli/{train,validation}.tsv. As the reference, "
              "the target is choices[label] over [obs1, obs2, hyp1, hyp2], so label 2 means hyp1 and 3 hyp2."),
    Spec("cosmos_qa", pp.spot_multiple_choice("cosmo_qa", ("answer0", "answer1", "answer2", "answer3"),
                                              question_key="question", context_key="context"), _ACC,
         "spot_rainbow_cosmos_qa_v100", tfds=("cosmos_qa",),
         note="Prefix 'cosmo_qa' as the reference spells it; the context goes last (the reference's "
              "list.extend bug would drop the example)."),
    Spec("hellaswag", pp.spot_multiple_choice("hellaswag", ("endings",) * 4, (0, 1, 2, 3), question_key="context"),
         _ACC, "spot_rainbow_hellaswag_v110", tfds=("hellaswag",)),
    Spec("piqa", pp.spot_multiple_choice("piqa", ("sol1", "sol2"), question_key="goal"), _ACC,
         "spot_rainbow_piqa_v100", tfds=("piqa",)),
    Spec("social_iqa", pp.spot_multiple_choice("socialiqa", ("answerA", "answerB", "answerC"),
                                               question_key="question", context_key="context"), _ACC,
         "rom_rainbow_socialiqa_v100",
         local=("social_iqa", (("context", "str"), ("question", "str"), ("answerA", "str"), ("answerB", "str"),
                               ("answerC", "str"), ("label", "0-based index into [answerA, answerB, answerC]"))),
         note="SocialIQa; not in TFDS: $SPOT_JAX_DATA_DIR/social_iqa/{train,validation}.tsv."),
    Spec("winogrande", pp.spot_multiple_choice("winogrande", ("option1", "option2"), question_key="sentence"), _ACC,
         "spot_rainbow_winogrande_v110", tfds=("winogrande",), split_map=(("train", "train_xl"),),
         note="train_xl; TFDS 1.2.0 (see TFDS_VERSIONS)."),
)

# ----------------------------------------------------------------------------- translation (T5's WMT tasks)
TRANSLATION = (
    Spec("wmt_t2t_ende", pp.translate("en", "de"), ("bleu",), "wmt_t2t_ende_v003", tfds=("wmt_t2t_translate/de-en",)),
    Spec("wmt15_enfr", pp.translate("en", "fr"), ("bleu",), "wmt15_enfr_v003", tfds=("wmt15_translate/fr-en",)),
    Spec("wmt16_enro", pp.translate("en", "ro"), ("bleu",), "wmt16_enro_v003", tfds=("wmt16_translate/ro-en",)),
)

# ----------------------------------------------------------------------------- summarization (summarization.py)
_SUMMARIZATION = {  # name (= TFDS name): (source key, target key, the reference's task name)
    "aeslc": ("email_body", "subject_line", "spot_aeslc_v100"),
    "billsum": ("text", "summary", "spot_billsum_v300"),
    "gigaword": ("document", "summary", "spot_gigaword_v120"),
    "cnn_dailymail": ("article", "highlights", "spot_cnn_dailymail_v320"),
    "multi_news": ("document", "summary", "spot_multi_news_v100"),
    "samsum": ("dialogue", "summary", "spot_samsum_v100"),
    "newsroom": ("text", "summary", "spot_newsroom_v100"),
}
SUMMARIZATION = tuple(
    Spec(name, pp.text_generation(source, target, task_name=name, prefix="summarize:"), ("rouge",), reference,
         tfds=(name,), eval_split="test" if name == "billsum" else "validation",
         note="BillSum has no validation split: eval = test." if name == "billsum" else "")
    for name, (source, target, reference) in _SUMMARIZATION.items())

# ----------------------------------------------------------------------------- GEM (gem.py)
_GEM_SEGMENT = " \\\\n "  # the reference's separator of list-valued sources: ' \\n' with two backslashes
_GEM = {  # config: preprocessor
    "common_gen": pp.text_generation("concepts", "target", "common_gen", source_segment=_GEM_SEGMENT),
    "dart": pp.text_generation("tripleset", "target", "dart", source_segment=_GEM_SEGMENT),
    "e2e_nlg": pp.text_generation("meaning_representation", "target", "e2e_nlg"),
    "schema_guided_dialog": pp.gem_schema_guided_dialog("schema_guided_dialog"),
    "web_nlg_en": pp.text_generation("input", "target", "web_nlg_en", source_segment=_GEM_SEGMENT),
    "wiki_auto_asset_turk": pp.text_generation("source", "target", "wiki_auto_asset_turk", prefix="simplify:"),
    "xsum": pp.text_generation("document", "target", "xsum", prefix="summarize:"),
    "wiki_lingua_english_en": pp.text_generation("source_aligned", "target_aligned", "wiki_lingua_english_en",
                                                 prefix="summarize:", source_nested_key="en",
                                                 target_nested_key="en"),
}
# The reference names six of the eight TFDS datasets without 'gem/' ('e2e_nlg:1.1.0', 'xsum:1.1.0', ...);
# the features it reads ('target', 'meaning_representation', ...) are those of GEM's configs, read here.
GEM = tuple(
    Spec(f"gem_{config}", preprocessor, ("rouge", "bleu"), f"spot_gem_{config}_v110", tfds=(f"gem/{config}",),
         note="The reference reads source_key 'input', which TFDS's gem/wiki_auto_asset_turk lacks; this "
              "reads 'source'." if config == "wiki_auto_asset_turk" else "")
    for config, preprocessor in _GEM.items())

FAMILIES: dict[str, tuple[Spec, ...]] = {
    "nli": NLI, "paraphrase": PARAPHRASE, "sentiment": SENTIMENT, "mrqa": MRQA, "rainbow": RAINBOW,
    "translation": TRANSLATION, "summarization": SUMMARIZATION, "gem": GEM,
}
SPECS: tuple[Spec, ...] = tuple(s for family in FAMILIES.values() for s in family)
