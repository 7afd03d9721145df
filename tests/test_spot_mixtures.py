"""Generic SPoT's Table-1 mixtures (Vu et al., 2022): each resolves to exactly its member tasks, mixes
them examples-proportionally with T5's cap (rates checked against numbers computed by hand), and every
member preprocesses its data (TFDS members under `tfds.testing.mock_data`, local-file members on a
fabricated row) into the reference's format (one family at a time, expected strings written out; the
expected strings were checked against prompt-tuning's and T5's own preprocessors run in the t5
reference venv)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from spot_jax.data import mixtures, pipeline, spot_tasks, tasks
from spot_jax.data import preprocessors as pp

# The Table-1 rows and their members, written out (not read from the code under test).
MEMBERS = {
    "glue": {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"},
    "super_glue": {"boolq", "cb", "copa", "multirc", "record", "super_glue_rte", "wic", "wsc"},
    "spot_nli": {"anli_r1", "anli_r2", "anli_r3", "cb", "docnli", "mnli", "qnli", "rte", "snli"},
    "spot_paraphrase": {"cxc", "mrpc", "qqp", "stsb"},
    "spot_sentiment": {"goemotions", "imdb", "sentiment140", "yelp_polarity", "cr"},
    "spot_mrqa": {"mrqa_squad", "mrqa_news_qa", "mrqa_trivia_qa", "mrqa_search_qa", "mrqa_hotpot_qa",
                  "mrqa_natural_questions"},
    "spot_rainbow": {"abductive_nli", "cosmos_qa", "hellaswag", "piqa", "social_iqa", "winogrande"},
    "spot_translation": {"wmt_t2t_ende", "wmt15_enfr", "wmt16_enro"},
    "spot_summarization": {"aeslc", "billsum", "gigaword", "cnn_dailymail", "multi_news", "samsum", "newsroom"},
    "spot_gem": {"gem_common_gen", "gem_dart", "gem_e2e_nlg", "gem_schema_guided_dialog", "gem_web_nlg_en",
                 "gem_wiki_auto_asset_turk", "gem_xsum", "gem_wiki_lingua_english_en"},
}
ALL = set().union(*MEMBERS.values())
U = 2 ** 16  # sizes below are multiples of U; T5's cap 2**19 = 8U

# (train sizes in the mixture's task order, in units of U) -> rates by hand: min(n, 8) / sum.
HAND_RATES = {
    # 16 -> 8 (capped); 8 + 4 + 4 + 2 + 2 + 1 + 1 + 2 = 24
    "glue": ([16, 4, 4, 2, 2, 1, 1, 2], [8 / 24, 4 / 24, 4 / 24, 2 / 24, 2 / 24, 1 / 24, 1 / 24, 2 / 24]),
    # 1 + 1 + 1 + 1 + 8 + 1 + 1 + 2 = 16; ReCoRD (20U) capped
    "super_glue": ([1, 1, 1, 1, 20, 1, 1, 2], [1 / 16, 1 / 16, 1 / 16, 1 / 16, 8 / 16, 1 / 16, 1 / 16, 2 / 16]),
    # DocNLI (12U) and SNLI (10U) capped to 8: 1 + 1 + 2 + 1 + 8 + 6 + 2 + 1 + 8 = 30
    "spot_nli": ([1, 1, 2, 1, 12, 6, 2, 1, 10],
                 [1 / 30, 1 / 30, 2 / 30, 1 / 30, 8 / 30, 6 / 30, 2 / 30, 1 / 30, 8 / 30]),
    # all below the cap: 1 + 1 + 6 + 2 = 10
    "spot_paraphrase": ([1, 1, 6, 2], [0.1, 0.1, 0.6, 0.2]),
    # Sentiment140 (24U) and Yelp (9U) capped: 2 + 1 + 8 + 8 + 1 = 20
    "spot_sentiment": ([2, 1, 24, 9, 1], [0.1, 0.05, 0.4, 0.4, 0.05]),
    # 1 + 1 + 2 + 2 + 2 + 8 (NQ 100U capped) = 16
    "spot_mrqa": ([1, 1, 2, 2, 2, 100], [1 / 16, 1 / 16, 2 / 16, 2 / 16, 2 / 16, 8 / 16]),
    # all equal: 1/6 each
    "spot_rainbow": ([1, 1, 1, 1, 1, 1], [1 / 6] * 6),
    # every WMT set is above the cap: equal thirds
    "spot_translation": ([70, 600, 9], [1 / 3, 1 / 3, 1 / 3]),
    # 1 + 1 + 8 (Gigaword 60U) + 4 + 1 + 1 + 8 (Newsroom 16U) = 24
    "spot_summarization": ([1, 1, 60, 4, 1, 1, 16], [1 / 24, 1 / 24, 8 / 24, 4 / 24, 1 / 24, 1 / 24, 8 / 24]),
    # 1 each, WikiAuto (8U exactly: at the cap) -> 7 + 8 = 15
    "spot_gem": ([1, 1, 1, 1, 1, 8, 1, 1], [1 / 15, 1 / 15, 1 / 15, 1 / 15, 1 / 15, 8 / 15, 1 / 15, 1 / 15]),
}


@pytest.mark.parametrize("name", sorted(MEMBERS) + ["spot_all"])
def test_table_1_mixture_resolves_to_exactly_its_members(name):
  mixture = mixtures.get_mixture(name)
  expected = ALL if name == "spot_all" else MEMBERS[name]
  assert set(mixture.task_names) == expected and len(mixture.task_names) == len(expected)
  assert [t.name for t in mixture.tasks()] == list(mixture.task_names)  # every member is registered
  assert mixture.rates == "proportional" and mixture.cap == 2 ** 19 and mixture.temperature == 1.0


def test_all_is_the_union_of_the_rows():
  assert len(ALL) == 57  # 8 + 8 + 9 + 4 + 5 + 6 + 6 + 3 + 7 + 8 = 64, less 7 repeats (cb mnli qnli rte mrpc qqp stsb)
  assert mixtures.TABLE_1_MIXTURES.keys() == set(MEMBERS) | {"spot_all"}


@pytest.mark.parametrize("name", sorted(HAND_RATES))
def test_table_1_rates_equal_hand_computed_rates(name):
  sizes, expected = HAND_RATES[name]
  rates = mixtures.get_mixture(name).normalized_rates([n * U for n in sizes])
  np.testing.assert_allclose(rates, expected, rtol=0, atol=1e-12)


def test_all_rates_equal_hand_computed_rates():
  """57 tasks of 2**14 examples, one of 2**20 (capped at 2**19 = 32 * 2**14): 1/88 each, 32/88."""
  mixture = mixtures.get_mixture("spot_all")
  sizes = [2 ** 14] * 57
  big = mixture.task_names.index("mrqa_natural_questions")
  sizes[big] = 2 ** 20
  expected = np.full(57, 1 / 88)
  expected[big] = 32 / 88
  np.testing.assert_allclose(mixture.normalized_rates(sizes), expected, rtol=0, atol=1e-12)


class _LazyExamples:
  """`n` mock examples made on demand (a mixture's rates need only the split sizes)."""

  def __init__(self, features, n, fix=None):
    self._gen, self._n, self._fix = mocking.RandomFakeGenerator(features, 8), n, fix

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    ex = dict(self._gen[int(i) % 8])
    return self._fix(ex, int(i)) if self._fix else ex


def test_pipeline_mixes_translation_by_the_split_sizes_with_the_cap(tmp_path):
  """End to end: the pipeline reads each member's train size and mixes with T5's cap.
  WMT En-De 2**20 (capped to 2**19), En-Fr 2**18, En-Ro 2**17 -> 4/7, 2/7, 1/7."""
  sizes = {"wmt_t2t_translate": 2 ** 20, "wmt15_translate": 2 ** 18, "wmt16_translate": 2 ** 17}

  def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    del split, decoders, deserialize_method, kwargs
    return _LazyExamples(builder.info.features, sizes[builder.name])

  from spot_jax.data import vocab as vocab_lib
  lines = ["translate English to German French Romanian: a b c d e f g h i j"] * 50
  voc = vocab_lib.SentencePieceVocab(vocab_lib.train_sentencepiece(lines, str(tmp_path / "m"), 60))
  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    it = pipeline.make_train_iterator("spot_translation", voc, batch_size=4, input_length=32, target_length=8,
                                      seed=0, prefetch=0)
    next(it)
  assert it.task_names == ("wmt_t2t_ende", "wmt15_enfr", "wmt16_enro")
  np.testing.assert_allclose(it.rates, [4 / 7, 2 / 7, 1 / 7], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- every member preprocesses

def _polarity(ex, i):
  ex["polarity"] = np.int32((0, 2, 4)[i % 3])
  return ex


def _answers(ex, i):
  ex["answers"] = np.array([f"answer {i}"])
  return ex


def _endings(ex, i):
  ex["endings"], ex["label"] = np.array(["e0", "e1", "e2", "e3"]), np.int32(i % 4)
  return ex


# Random mock values that break a dataset's own invariants, fixed.
_FIXES = {"sentiment140": _polarity, "hellaswag": _endings, **{f"mrqa_{d}": _answers for d in spot_tasks.MRQA_DATASETS}}
# Local-file members: one fabricated row each, in the reference's columns.
_LOCAL_ROW = {
    "cxc": {"sentence1": "a dog runs", "sentence2": "a dog is running", "label": "4.3", "index": "3"},
    "cr": {"text": "great battery", "label": "1"},
    "abductive_nli": {"obs1": "Ann woke up late.", "obs2": "She missed the bus.", "hyp1": "She overslept.",
                      "hyp2": "She ran.", "label": "2"},
    "social_iqa": {"context": "Kim paid.", "question": "Why?", "answerA": "to be kind", "answerB": "to go",
                   "answerC": "none", "label": "0"},
}
_GLUE_SUPER_GLUE = MEMBERS["glue"] | MEMBERS["super_glue"]  # tests/test_data_tasks.py runs them on mock data


@pytest.mark.parametrize("name", sorted(ALL - _GLUE_SUPER_GLUE))
def test_member_preprocesses_its_data(name):
  task = tasks.get_task(name)
  if name in _LOCAL_ROW:
    outputs = task.preprocess(_LOCAL_ROW[name])
  else:
    fix = _FIXES.get(name)

    def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
      del split, decoders, deserialize_method, kwargs
      return _LazyExamples(builder.info.features, 4, fix)

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
      source = task.source.open(task.train_split)
      outputs = [o for i in range(len(source)) for o in task.preprocess(source[i])]
  assert outputs, name
  for out in outputs:
    assert isinstance(out["inputs"], str) and out["inputs"].strip(), (name, out)
    assert isinstance(out["targets"], str), (name, out)
    if task.postprocessor == "label":
      assert out["targets"] == task.label_words[out["label"]]


# ----------------------------------------------------------------------------- formats, one family at a time
# Raw examples in the TFDS layout; expected strings as prompt-tuning's (or T5's) preprocessors write them.

W = "  Tabs\there,\nnew  line ü —  é.  "  # raw whitespace: the reference collapses it (not stripped)


def _one(name, ex):
  (out,) = tasks.get_task(name).preprocess(ex)
  return out


def test_nli_format():
  out = _one("anli_r1", {"hypothesis": W, "context": "The cat (a tabby) sat.", "label": 2, "uid": "x"})
  assert out["inputs"] == "anli_r1 hypothesis: Tabs here, new line ü — é. context: The cat (a tabby) sat."
  assert out["targets"] == "contradiction"
  out = _one("docnli", {"premise": "P.", "hypothesis": "H.", "label": 1})
  assert (out["inputs"], out["targets"]) == ("doc_nli hypothesis: H. premise: P.", "entailment")
  assert tasks.get_task("snli").preprocess({"premise": "P", "hypothesis": "H", "label": -1}) == []  # no gold label


def test_paraphrase_format():
  out = _one("cxc", {"sentence1": W, "sentence2": "b", "label": "3.1", "index": "4"})
  assert out == {"inputs": "cxc sentence1: Tabs here, new line ü — é. sentence2: b", "targets": "3.2", "idx": 4}


def test_sentiment_formats():
  out = _one("sentiment140", {"text": W, "polarity": 4, "date": "d", "query": "q", "user": "u"})
  assert (out["inputs"], out["targets"]) == ("sentiment140 text: Tabs here, new line ü — é. ", "positive")
  assert _one("imdb", {"text": "Fine.", "label": 0})["inputs"] == "imdb_reviews text: Fine."
  assert _one("yelp_polarity", {"text": "Good.", "label": 1})["inputs"] == "yelp_polarity_reviews text: Good."
  emotions = {n: n in ("joy", "admiration", "neutral") for n in pp.GOEMOTIONS_LABELS}
  out = _one("goemotions", {"comment_text": W, **emotions})
  assert out["inputs"] == "goemotions comment: Tabs here, new line ü — é. "
  assert out["targets"] == "admiration \\n joy \\n neutral"  # a literal backslash-n, TFDS feature order


def test_mrqa_format():
  out = _one("mrqa_news_qa", {"qid": "q1", "question": "Who's   there?", "context": W + "U.S.A.",
                              "answers": ["U.S.", "the U.S.A"], "subset": "s"})
  assert out["inputs"] == "news_qa question: Who ' s there ? context: Tabs here , new line ü — é . U . S . A . "
  assert out["targets"] == "U . S . " and out["answers"] == ["U . S . ", "the U . S . A"]
  task = tasks.get_task("mrqa_news_qa")
  assert task.evaluate([{**out, "example": {}, "index": 0}], ["u. s."])["em"] == 100.0  # SQuAD-normalised


def test_rainbow_formats():
  out = _one("hellaswag", {"context": W, "endings": ["e0 ", " e1", "e2", "e3"], "label": 3, "activity_label": "a"})
  assert out["inputs"] == ("hellaswag context: Tabs here, new line ü — é. endings 0: e0 endings 1: e1 "
                           "endings 2: e2 endings 3: e3")
  assert out["targets"] == "e3"
  out = _one("piqa", {"goal": "Open a jar.", "sol1": "a  b", "sol2": "c\td", "label": 1, "id": "i"})
  assert (out["inputs"], out["targets"]) == ("piqa goal: Open a jar. sol1: a b sol2: c d", "c\td")
  out = _one("cosmos_qa", {"context": "C.", "question": "q?", "answer0": "a", "answer1": "b", "answer2": "c",
                           "answer3": "d", "label": 2, "id": "i"})
  assert (out["inputs"], out["targets"]) == ("cosmo_qa question: q? answer0: a answer1: b answer2: c answer3: d "
                                             "context: C.", "c")
  out = _one("winogrande", {"sentence": "Tom _ is.", "option1": "Tom", "option2": "Ann", "label": 0})
  assert (out["inputs"], out["targets"]) == ("winogrande sentence: Tom _ is. option1: Tom option2: Ann", "Tom")


def test_translation_format():
  out = _one("wmt_t2t_ende", {"en": W, "de": " Das  ist gut. "})
  assert out == {"inputs": "translate English to German: " + W, "targets": " Das  ist gut. "}  # T5: text as is
  assert _one("wmt16_enro", {"en": "x", "ro": "y"})["inputs"] == "translate English to Romanian: x"
  assert _one("wmt15_enfr", {"en": "x", "fr": "y"})["inputs"] == "translate English to French: x"


def test_summarization_format():
  out = _one("aeslc", {"email_body": W, "subject_line": " Re:  hi\n"})
  assert out == {"inputs": "aeslc summarize: Tabs here, new line ü — é. ", "targets": " Re:  hi\n"}


def test_gem_formats():
  out = _one("gem_common_gen", {"concepts": ["ski  ", "moun\ttain"], "target": "A skier.", "gem_id": "g"})
  assert out["inputs"] == "common_gen ski   \\\\n moun\ttain"  # segments joined after the collapse, as the reference
  out = _one("gem_schema_guided_dialog", {"prompt": "Inform  x", "context": ["Hi there", "I want  a car"],
                                          "target": "Sure."})
  assert out["inputs"] == "schema_guided_dialog prompt: Inform x context: Hi there \\n I want  a car"
  out = _one("gem_wiki_lingua_english_en", {"source_aligned": {"en": W}, "target_aligned": {"en": "sum  mary"}})
  assert out == {"inputs": "wiki_lingua_english_en summarize: Tabs here, new line ü — é. ", "targets": "sum  mary"}
  assert _one("gem_e2e_nlg", {"meaning_representation": "name[X],  food[Y]", "target": "t"})["inputs"] == \
      "e2e_nlg name[X], food[Y]"


def test_generation_tasks_are_scored_by_t5s_metrics():
  expected = {"spot_translation": ("bleu",), "spot_summarization": ("rouge",), "spot_gem": ("rouge", "bleu"),
              "spot_mrqa": ("squad",)}
  for mixture, metric_names in expected.items():
    for name in mixtures.get_mixture(mixture).task_names:
      assert tasks.get_task(name).metric_names == metric_names, name
  task = tasks.get_task("gem_xsum")
  examples = [{"inputs": "x", "targets": "the cat sat on the mat .", "example": {}, "index": 0}]
  result = task.evaluate(examples, ["the cat sat on the mat ."])
  assert set(result) == {"rouge1", "rouge2", "rougeLsum", "bleu", "score"}
  assert abs(result["score"] - 100.0) < 1e-9


@pytest.mark.parametrize("name", sorted(MEMBERS) + ["spot_all"])
def test_each_table_1_mixture_has_an_experiment_config(name):
  import os
  from spot_jax import configs
  short = {"glue": "glue", "super_glue": "super_glue"}.get(name, name.replace("spot_", ""))
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                      f"spot_source_{short}.py")
  config = configs.load_experiment(path, "size=small")
  assert config.task == name and config.eval_task in mixtures.get_mixture(name).task_names + ("mnli",)
