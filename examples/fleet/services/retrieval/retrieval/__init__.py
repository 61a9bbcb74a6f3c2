"""TF-IDF retrieval over a tiny in-memory corpus, on the ml base."""
