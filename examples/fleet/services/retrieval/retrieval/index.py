"""Build a TF-IDF index and answer queries by cosine similarity."""

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

CORPUS = [
    "layered images share their base layers",
    "a service image holds only its code",
    "rebuild a base only when its dependencies change",
]


def search(query: str, corpus: list[str] = CORPUS) -> list[tuple[float, str]]:
    vectorizer = TfidfVectorizer().fit(corpus)
    scores = cosine_similarity(vectorizer.transform([query]), vectorizer.transform(corpus))[0]
    return sorted(zip(scores.tolist(), corpus, strict=True), reverse=True)
