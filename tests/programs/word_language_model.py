# A word-level language model on a folder of text (train.txt, valid.txt, test.txt), written in the
# manner of PyTorch's examples/word_language_model: a Transformer encoder over word embeddings with
# sinusoidal positions, truncated back-propagation through time over batchified text, gradient clipping
# and a hand-written SGD step, the learning rate divided by four whenever validation stops improving,
# and the best weights saved and loaded back for the test set.
#
#   python word_language_model.py --data DIR --epochs 2 --save model.pt
#
# main(argv, init_state) returns what it measured; init_state (optional) is a state_dict loaded
# into the model right after it is built (to start from given weights).
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- data
class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, path):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(path, "train.txt"))
        self.valid = self.tokenize(os.path.join(path, "valid.txt"))
        self.test = self.tokenize(os.path.join(path, "test.txt"))

    def tokenize(self, path):
        """One tensor of word ids for the whole file, with <eos> closing every line."""
        assert os.path.exists(path), path
        with open(path, "r", encoding="utf8") as f:
            for line in f:
                for word in line.split() + ["<eos>"]:
                    self.dictionary.add_word(word)
        with open(path, "r", encoding="utf8") as f:
            lines = []
            for line in f:
                ids = [self.dictionary.word2idx[word] for word in line.split() + ["<eos>"]]
                lines.append(torch.tensor(ids).type(torch.int64))
            return torch.cat(lines)


def batchify(data, bsz, device):
    """Cut the token stream into ``bsz`` columns: (len // bsz, bsz); the remainder is dropped."""
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous().to(device)


def get_batch(source, i, bptt):
    """Rows i .. i+seq_len as input and the same rows shifted by one as flat targets."""
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


# ----------------------------------------------------------------------------- model
class PositionalEncoding(nn.Module):
    """Adds sin/cos of geometrically spaced frequencies to the embeddings, then dropout.

    PE[pos, 2i] = sin(pos / 10000^(2i/d)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/d))
    """

    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super(PositionalEncoding, self).__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        pe = pe.unsqueeze(0).transpose(0, 1)  # (max_len, 1, d_model): broadcast over the batch
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x + self.pe[:x.size(0), :]
        return self.dropout(x)


class TransformerModel(nn.Transformer):
    """nn.Transformer's encoder stack between a word embedding and a linear read-out to the vocabulary."""

    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.5):
        super(TransformerModel, self).__init__(d_model=ninp, nhead=nhead, dim_feedforward=nhid,
                                               num_encoder_layers=nlayers, dropout=dropout)
        self.model_type = "Transformer"
        self.src_mask = None
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.input_emb = nn.Embedding(ntoken, ninp)
        self.ninp = ninp
        self.decoder = nn.Linear(ninp, ntoken)  # replaces nn.Transformer's decoder stack
        self.init_weights()

    def _generate_square_subsequent_mask(self, sz):
        return torch.log(torch.tril(torch.ones(sz, sz)))

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.input_emb.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, src, has_mask=True):
        if has_mask:
            device = src.device
            if self.src_mask is None or self.src_mask.size(0) != len(src):
                mask = self._generate_square_subsequent_mask(len(src)).to(device)
                self.src_mask = mask
        else:
            self.src_mask = None
        src = self.input_emb(src) * math.sqrt(self.ninp)
        src = self.pos_encoder(src)
        output = self.encoder(src, mask=self.src_mask)
        output = self.decoder(output)
        return F.log_softmax(output, dim=-1)


# ----------------------------------------------------------------------------- training
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Transformer word-level language model")
    parser.add_argument("--data", type=str, default="./data/wikitext-2", help="folder with train/valid/test.txt")
    parser.add_argument("--emsize", type=int, default=200, help="size of word embeddings")
    parser.add_argument("--nhid", type=int, default=200, help="hidden units of the feed-forward layers")
    parser.add_argument("--nlayers", type=int, default=2, help="number of encoder layers")
    parser.add_argument("--nhead", type=int, default=2, help="number of attention heads")
    parser.add_argument("--lr", type=float, default=20, help="initial learning rate")
    parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping")
    parser.add_argument("--epochs", type=int, default=40, help="upper epoch limit")
    parser.add_argument("--batch_size", type=int, default=20, metavar="N", help="batch size")
    parser.add_argument("--bptt", type=int, default=35, help="sequence length")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout applied to layers (0 = none)")
    parser.add_argument("--seed", type=int, default=1111, help="random seed")
    parser.add_argument("--cuda", action="store_true", default=False, help="use CUDA")
    parser.add_argument("--log-interval", type=int, default=200, metavar="N", help="report interval")
    parser.add_argument("--save", type=str, default="model.pt", help="path to save the final model")
    parser.add_argument("--words", type=int, default=20, help="number of words to generate at the end")
    return parser.parse_args(argv)


def main(argv=None, init_state=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if torch.cuda.is_available() and not args.cuda:
        print("WARNING: You have a CUDA device, so you should probably run with --cuda")
    device = torch.device("cuda" if args.cuda else "cpu")

    corpus = Corpus(args.data)
    eval_batch_size = 2
    train_data = batchify(corpus.train, args.batch_size, device)
    val_data = batchify(corpus.valid, eval_batch_size, device)
    test_data = batchify(corpus.test, eval_batch_size, device)

    ntokens = len(corpus.dictionary)
    model = TransformerModel(ntokens, args.emsize, args.nhead, args.nhid, args.nlayers, args.dropout).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    criterion = nn.NLLLoss()
    record = {"train_loss": [], "val_loss": [], "lr": [], "grad_norm": []}

    def evaluate(data_source):
        model.eval()
        total_loss = 0.0
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, args.bptt):
                data, targets = get_batch(data_source, i, args.bptt)
                output = model(data)
                output = output.view(-1, ntokens)
                total_loss += len(data) * criterion(output, targets).item()
        return total_loss / (len(data_source) - 1)

    def train(epoch, lr):
        model.train()
        total_loss = 0.0
        start_time = time.time()
        for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
            data, targets = get_batch(train_data, i, args.bptt)
            model.zero_grad()
            output = model(data)
            output = output.view(-1, ntokens)
            loss = criterion(output, targets)
            loss.backward()
            # clip_grad_norm_ keeps exploding gradients in check for the plain SGD step below
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            total_loss += loss.item()
            record["train_loss"].append(loss.item())
            record["grad_norm"].append(float(norm))
            if batch % args.log_interval == 0 and batch > 0:
                cur_loss = total_loss / args.log_interval
                elapsed = time.time() - start_time
                print("| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | ms/batch {:5.2f} | "
                      "loss {:5.2f} | ppl {:8.2f}".format(epoch, batch, len(train_data) // args.bptt, lr,
                                                         elapsed * 1000 / args.log_interval, cur_loss,
                                                         math.exp(cur_loss)))
                total_loss = 0.0
                start_time = time.time()

    lr = args.lr
    best_val_loss = None
    for epoch in range(1, args.epochs + 1):
        epoch_start_time = time.time()
        train(epoch, lr)
        val_loss = evaluate(val_data)
        record["val_loss"].append(val_loss)
        print("-" * 89)
        print("| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | valid ppl {:8.2f}".format(
            epoch, (time.time() - epoch_start_time), val_loss, math.exp(val_loss)))
        print("-" * 89)
        if not best_val_loss or val_loss < best_val_loss:
            torch.save(model.state_dict(), args.save)
            best_val_loss = val_loss
        else:
            lr /= 4.0  # no improvement on the validation set: anneal
        record["lr"].append(lr)

    model.load_state_dict(torch.load(args.save))
    test_loss = evaluate(test_data)
    record["test_loss"] = test_loss
    record["test_ppl"] = math.exp(test_loss)
    print("=" * 89)
    print("| End of training | test loss {:5.2f} | test ppl {:8.2f}".format(test_loss, math.exp(test_loss)))
    print("=" * 89)

    # greedy generation from the first word of the corpus, without the causal mask as the example's generate.py
    model.eval()
    words = [corpus.dictionary.idx2word[0]]
    input = torch.tensor([[0]], dtype=torch.long).to(device)
    with torch.no_grad():
        for _ in range(args.words):
            output = model(input, False)
            word_weights = output[-1].squeeze().exp()
            word_idx = torch.argmax(word_weights).item()
            input = torch.cat([input, torch.tensor([[word_idx]]).to(device)], 0)
            words.append(corpus.dictionary.idx2word[word_idx])
    record["generated"] = words
    print(" ".join(words))
    record["state_dict"] = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    return record


if __name__ == "__main__":
    main()
