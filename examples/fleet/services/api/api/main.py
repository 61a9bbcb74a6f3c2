"""Scores a vector with numpy behind FastAPI."""

import _fastmath  # CPython extension linked against libfastmath (built in the cpu base)
import numpy as np
from fastapi import FastAPI

app = FastAPI(title="acme api")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/norm")
def norm(values: str = "3,4") -> dict[str, float]:
    vector = np.array([float(v) for v in values.split(",")])
    return {"norm": float(np.linalg.norm(vector))}


@app.get("/dot")
def dot(a: str = "1,2", b: str = "3,4") -> dict[str, float]:
    left = [float(v) for v in a.split(",")]
    right = [float(v) for v in b.split(",")]
    return {"dot": _fastmath.dot(left, right)}
