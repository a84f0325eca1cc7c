# Fitting y = exp(x/2) on [-2, 2] with a cubic, four ways, in the manner of the
# "Learning PyTorch with Examples" tutorial: raw tensors and autograd, a custom
# autograd Function, nn.Sequential with a manual update, and an optimizer.
import math

import torch

dtype = torch.float64
device = torch.device("cpu")
torch.manual_seed(0)

x = torch.linspace(-2, 2, 500, device=device, dtype=dtype)
y = torch.exp(x / 2)

# --- 1. tensors and autograd; gradients reset with `w.grad = None`
a = torch.randn((), device=device, dtype=dtype, requires_grad=True)
b = torch.randn((), device=device, dtype=dtype, requires_grad=True)
c = torch.randn((), device=device, dtype=dtype, requires_grad=True)
d = torch.randn((), device=device, dtype=dtype, requires_grad=True)

learning_rate = 1e-4
losses_autograd = []
for t in range(300):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = (y_pred - y).pow(2).sum()
    losses_autograd.append(loss.item())
    if t % 100 == 99:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None
print(f"Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3")


# --- 2. a custom autograd Function; gradients reset with `w.grad.zero_()`
class Cubic(torch.autograd.Function):
    """P(x) = (x^3 - x) / 2, with its derivative written by hand."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (input ** 3 - input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 0.5 * (3 * input ** 2 - 1)


w0 = torch.full((), 0.5, device=device, dtype=dtype, requires_grad=True)
w1 = torch.full((), -0.5, device=device, dtype=dtype, requires_grad=True)
w2 = torch.full((), 1.0, device=device, dtype=dtype, requires_grad=True)
w3 = torch.full((), 0.1, device=device, dtype=dtype, requires_grad=True)

P3 = Cubic.apply
losses_function = []
for t in range(300):
    y_pred = w0 + w1 * P3(w2 + w3 * x)
    loss = (y_pred - y).pow(2).sum()
    losses_function.append(loss.item())
    if t % 100 == 99:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        for w in (w0, w1, w2, w3):
            w -= 5e-5 * w.grad
            w.grad.zero_()
print(f"Result: y = {w0.item()} + {w1.item()} * P3({w2.item()} + {w3.item()} x)")

# --- 3. nn.Sequential, manual update of model.parameters() with `-=`
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)

model = torch.nn.Sequential(
    torch.nn.Linear(3, 1),
    torch.nn.Flatten(0, 1),
)
loss_fn = torch.nn.MSELoss(reduction="sum")

losses_sequential = []
for t in range(300):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    losses_sequential.append(loss.item())
    if t % 100 == 99:
        print(t, loss.item())
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad

linear_layer = model[0]
print(f"Result: y = {linear_layer.bias.item()} + {linear_layer.weight[:, 0].item()} x + "
      f"{linear_layer.weight[:, 1].item()} x^2 + {linear_layer.weight[:, 2].item()} x^3")

# --- 4. the same model trained by an optimizer (RMSprop, as the tutorial's optim section)
model_optim = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
optimizer = torch.optim.RMSprop(model_optim.parameters(), lr=1e-3)
losses_optim = []
for t in range(300):
    loss = loss_fn(model_optim(xx), y)
    losses_optim.append(loss.item())
    if t % 100 == 99:
        print(t, loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

# --- 5. the older tutorial style: updates through `.data`, gradients zeroed with `.grad.data.zero_()`
w_in = torch.randn(3, 8, device=device, dtype=dtype, requires_grad=True)
w_out = torch.randn(8, 1, device=device, dtype=dtype, requires_grad=True)
losses_data = []
for t in range(200):
    y_pred = (xx @ w_in).clamp(min=0) @ w_out
    loss = (y_pred.squeeze(1) - y).pow(2).sum()
    losses_data.append(loss.item())
    loss.backward()
    w_in.data -= 1e-6 * w_in.grad.data
    w_out.data -= 1e-6 * w_out.grad.data
    w_in.grad.data.zero_()
    w_out.grad.data.zero_()
print(199, losses_data[-1])

# aliasing: `h` and `a` are the same tensor, so `a += 1` shows through `h`
h = a
with torch.no_grad():
    a += 1
print("aliased:", h.item() == a.item(), math.isclose(h.item(), a.item()))
