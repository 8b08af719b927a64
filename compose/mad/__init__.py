"""The MAD synthetic proxy suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures").

Six token tasks generated in-process (in-context, fuzzy and noisy recall, selective copying,
compression, memorization), each trained from scratch on a model of the candidate spec and scored as
accuracy. generators.py defines the tasks, config.py the presets and budget, train.py the evaluation.
See docs/mad.md for the settings, their sources and measured numbers.
"""

from compose.mad.config import PRESETS, MADConfig, TrainSettings
from compose.mad.generators import (
           IGNORE,
           TASKS,
           MADError,
           generate,
           get_task,
           make_task_config,
           memorization_map,
)
from compose.mad.train import evaluate_mad, split_seed

__all__ = ["IGNORE", "PRESETS", "TASKS", "MADConfig", "MADError", "TrainSettings", "evaluate_mad", "generate",
           "get_task", "make_task_config", "memorization_map", "split_seed"]
