"""Shared test helpers."""

import os

import pandas as pd
import pytest

from orchestrator import schema

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def read_rows(results: str, dataset: str) -> pd.DataFrame:
    """A results folder's rows, deterministic columns only, sorted by the keys."""
    path = os.path.join(results, schema.EVALS_DIR if dataset == "evals" else schema.TRAIN_DIR)
    frame = pd.read_parquet(path)
    keys = list(schema.EVAL_KEYS if dataset == "evals" else schema.TRAIN_KEYS)
    columns = schema.deterministic_columns(frame.columns)
    frame = frame[columns].sort_values(keys).reset_index(drop=True)
    for column in schema.PARTITION_COLUMNS:
        frame[column] = frame[column].astype(str)
    return frame


@pytest.fixture
def rows():
    return read_rows
