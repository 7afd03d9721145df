"""Tasks, in one import: the registry, the sources and the built-in catalogue.

    from spot_jax.data import tasks
    task = tasks.get_task("rte")                         # a built-in task (`catalog`)
    tasks.import_task_modules(config.data.task_modules)  # a run's other tasks, e.g. your own module

This module only gathers the names users reach for; each lives where its job is:
- `registry`: `Task`, `register_task` / `get_task` / `list_tasks` / `is_registered`,
  `set_tfds_version`, `import_task_modules`, the metric names a task may list (`METRICS`).
- `sources`: `TfdsSource`, `LocalFileSource`, `InMemorySource`, data directories (`set_data_dir`),
  `DataNotFoundError`.
- `catalog`: T5's GLUE/SuperGLUE/SQuAD and the SPoT tasks, registered when it is imported (here), and
  their name lists (`GLUE_TASKS`, `SPOT_SOURCE_TASKS`, ...) and TFDS pins (`TFDS_VERSIONS`).

Importing it registers the catalogue and nothing else: TensorFlow Datasets is imported only when a
source is opened, and the offline synthetic tasks (`spot_jax.data.synthetic`) exist only where they
are imported, e.g. by listing that module in `config.data.task_modules`.
"""

from spot_jax.data.catalog import (GLUE_TASKS, MNLI_LABELS, RTE_LABELS, SPOT_SOURCE_TASKS, SPOT_TARGET_TASKS,
                                   SUPER_GLUE_TASKS, T5_TASK_NAMES, TABLE_1_TASKS, TFDS_VERSIONS)
from spot_jax.data.registry import (METRIC_ALIASES, METRICS, Task, get_task, import_task_modules, is_registered,
                                    list_tasks, register_task, set_tfds_version, t5_example)
from spot_jax.data.sources import (DataNotFoundError, InMemorySource, LocalFileSource, RandomAccess, Source,
                                   TfdsSource, local_data_dir, row_location, set_data_dir, split_location)

__all__ = [
    # registry
    "METRICS", "METRIC_ALIASES", "Task", "get_task", "import_task_modules", "is_registered", "list_tasks",
    "register_task", "set_tfds_version", "t5_example",
    # sources
    "DataNotFoundError", "InMemorySource", "LocalFileSource", "RandomAccess", "Source", "TfdsSource",
    "local_data_dir", "row_location", "set_data_dir", "split_location",
    # catalog
    "GLUE_TASKS", "MNLI_LABELS", "RTE_LABELS", "SPOT_SOURCE_TASKS", "SPOT_TARGET_TASKS", "SUPER_GLUE_TASKS",
    "T5_TASK_NAMES", "TABLE_1_TASKS", "TFDS_VERSIONS",
]
