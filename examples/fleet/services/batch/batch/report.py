"""Summarise a few numbers as a table."""

import numpy as np
from tabulate import tabulate


def summary(values: list[float]) -> str:
    arr = np.asarray(values)
    rows = [["count", arr.size], ["mean", arr.mean()], ["max", arr.max()]]
    return tabulate(rows, headers=["stat", "value"])
