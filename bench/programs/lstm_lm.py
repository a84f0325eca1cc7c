# LSTM language model training step with the defaults of PyTorch's examples/word_language_model
# (main.py --model LSTM): vocabulary 10,000, embedding and hidden 200, 2 layers, dropout 0.2,
# bptt 35, batch 20, the hand-written SGD step (lr 20) after clip_grad_norm_(0.25), hidden state
# carried from batch to batch (detached). The corpus is a random token stream.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ntokens, emsize, nhid, nlayers, dropout = 10_000, 200, 200, 2, 0.2
bptt, batch_size, lr, clip = 35, 20, 20.0, 0.25


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nhid, self.nlayers = nhid, nlayers
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def get_batch(source, i):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


torch.manual_seed(1111)
corpus = torch.from_numpy(np.random.default_rng(0).integers(0, ntokens, 40 * bptt * batch_size + 1))
train_data = batchify(corpus, batch_size)
model = RNNModel(ntokens, emsize, nhid, nlayers, dropout)
model.train()
criterion = nn.NLLLoss()
hidden = model.init_hidden(batch_size)
position = 0


def step():
    global hidden, position
    if position >= train_data.size(0) - 1 - bptt:
        position = 0
    data, targets = get_batch(train_data, position)
    position += bptt
    model.zero_grad()
    hidden = repackage_hidden(hidden)
    output, hidden = model(data, hidden)
    loss = criterion(output, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)
    return loss
