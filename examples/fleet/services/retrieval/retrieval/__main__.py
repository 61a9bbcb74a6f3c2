import sys

from retrieval.index import search

for score, text in search(" ".join(sys.argv[1:]) or "base layers"):
    print(f"{score:.3f}  {text}")
