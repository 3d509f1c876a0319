"""Evaluation of trained runs: sample metrics for every sampler x NFE pair, bits/dim, report.json and plots, and the
feature classifier the image metrics use."""

from .data import load_featurizer, reference_data, train_features
from .likelihood import BpdOptions
from .report import EvalOptions, evaluate_run, parse_list, parse_nfe, summary_table

__all__ = ["BpdOptions", "EvalOptions", "evaluate_run", "load_featurizer", "parse_list", "parse_nfe",
           "reference_data", "summary_table", "train_features"]
