import argparse
import tempfile
from pathlib import Path

from training.loop import train

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    error = train(args.epochs, Path(tmp) / "model.safetensors")
print(f"max weight error after {args.epochs} epoch(s): {error:.4f}")
