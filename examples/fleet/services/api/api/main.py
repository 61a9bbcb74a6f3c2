"""Scores a vector with numpy behind FastAPI."""

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
