"""A task module of your own: it registers your tasks when imported, and a config lists it.

    c.data.task_modules = ("experiments/task_modules/my_tasks.py",)  # or a module name: "my_package.my_tasks"

Every job imports the modules its config lists (`spot_jax.data.tasks.import_task_modules`) before it
looks a task up, so a run has exactly the built-in tasks plus the ones its config asks for
(experiments/custom_task.py uses this one). Put the task's files under
<data_dir>/my_sentiment/train.jsonl and validation.jsonl (or .tsv/.csv with a header row), one
example per line: {"sentence": "a gripping film", "label": 1}   (label 0 = negative, 1 = positive).
For a TFDS dataset use `tasks.TfdsSource(("name/config:version",))` instead of `LocalFileSource`;
mixtures of your tasks register the same way (`spot_jax.data.mixtures.register_mixture`).
"""

from spot_jax.data import preprocessors, tasks

LABEL_WORDS = ("negative", "positive")

tasks.register_task(tasks.Task(
    name="my_sentiment",
    source=tasks.LocalFileSource("my_sentiment", (("sentence", "the text"), ("label", "0 negative, 1 positive"))),
    preprocessor=preprocessors.classification("my_sentiment", (("sentence", "sentence"),), LABEL_WORDS),
    metric_names=("accuracy",),
    label_words=LABEL_WORDS,
    postprocessor="label",
    description="Example local-file task (experiments/task_modules/my_tasks.py).",
))
