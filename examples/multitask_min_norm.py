"""Three tasks on one shared network, trained with five ways of combining them: the per-task results.

scikit-learn's digits with three tasks derived from each image, each in its natural units:

- **digit**: the digit, 10 classes (softmax cross-entropy; accuracy);
- **loop**: whether the digit has a closed loop (0, 6, 8, 9; sigmoid cross-entropy; accuracy);
- **ink**: how many of the 64 pixels are dark (above 8 of 16), a count with a standard deviation of
  about 2.6 (squared error; R² on the test split).

A shared trunk (64 -> 64 -> 32, tanh) feeds one linear head per task. Each head is trained on its own
loss; the trunk is trained on a combination of the three (``polyloss.multitask``):

- ``combine_gradients`` of the three trunk gradients (``task_gradients``): ``"sum"``,
  ``"normalized"`` (each gradient divided by its norm, kexue 8896), ``"min_norm"`` (MGDA: the point
  of the gradients' convex hull nearest 0, a direction that lowers every loss to first order) and
  ``"pcgrad"`` (conflicting components projected out, Yu et al. 2020);
- ``weigh_losses(method="geometric")``: ``Σ log L_i``, i.e. the gradients weighted by ``1 / L_i``
  (kexue 8870).

There is no best row: each scheme trades the tasks differently. The squared error has the largest
gradient, so the sum spends the trunk on it; min-norm leans towards the smallest gradient; the
normalised sum gives each task one unit; the geometric weighting favours whichever loss is smallest.

    python examples/multitask_min_norm.py [--quick] [--plot multitask.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import polyloss
from polyloss import multitask

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
TASKS = ("digit", "loop", "ink")
METHODS = ("sum", "normalized", "min_norm", "pcgrad", "geometric")  # the last: weigh_losses


class Network(torch.nn.Module):
    def __init__(self, ink_mean):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 32),
                                         torch.nn.Tanh())
        self.heads = torch.nn.ModuleList([torch.nn.Linear(32, 10), torch.nn.Linear(32, 1), torch.nn.Linear(32, 1)])
        with torch.no_grad():
            self.heads[2].bias.fill_(ink_mean)  # the regression starts at the mean count

    def losses(self, x, digit, loop, ink):
        """The three task losses (batch means) and the three heads' outputs."""
        shared = self.trunk(x)
        outputs = [head(shared) for head in self.heads]
        return [polyloss.softmax_crossentropy(outputs[0], digit).mean(),
                polyloss.sigmoid_crossentropy(outputs[1][:, 0], loop).mean(),
                ((outputs[2][:, 0] - ink) ** 2).mean()], outputs


def evaluate(model, test):
    """Per task: the test loss and its metric (digit and loop accuracy, ink R²)."""
    x, digit, loop, ink = test
    with torch.no_grad():
        losses, outputs = model.losses(*test)
    return ([float(v) for v in losses],
            [float((outputs[0].argmax(-1) == digit).float().mean()),
             float(((outputs[1][:, 0] > 0).float() == loop).float().mean()),
             1 - float(losses[2]) / float(ink.var(correction=0))])


def train(method, train_set, test, *, epochs, seed):
    """Train one network; returns the test losses after every epoch and the trunk's task weights
    averaged over the last epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)  # PCGrad's orders
    model = Network(float(train_set[3].mean()))
    trunk = dict(model.trunk.named_parameters())
    heads = list(model.heads.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    curves = []
    for _ in range(epochs):
        weights = []
        for batch in torch.randperm(len(train_set[0])).split(64):
            losses, _ = model.losses(*(a[batch] for a in train_set))
            if method == "geometric":  # a loss weighting: one backward pass through everything
                optimizer.zero_grad()
                multitask.weigh_losses(torch.stack(losses), method="geometric").backward()
                weights.append([1 / float(v.detach()) for v in losses])  # ∇ Σ log L_i = Σ ∇L_i / L_i
            else:  # a gradient combination on the trunk; each head keeps its own loss's gradient
                grads = multitask.task_gradients(losses, trunk)
                options = {"key": rng} if method == "pcgrad" else {}
                direction, alpha = multitask.combine_gradients(grads, method=method, **options)
                head_grads = torch.autograd.grad(sum(losses), heads)
                optimizer.zero_grad()
                for name, parameter in trunk.items():
                    parameter.grad = direction[name]
                for parameter, grad in zip(heads, head_grads):
                    parameter.grad = grad
                weights.append(alpha.tolist())
            optimizer.step()
        curves.append(evaluate(model, test)[0])
    return model, np.array(curves), np.mean(weights, axis=0)


def main():
    args = arguments(__doc__.splitlines()[0])
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    loop = np.isin(data.target, [0, 6, 8, 9]).astype(np.float32)
    ink = (data.data > 8).sum(1).astype(np.float32)
    split = train_test_split(x, data.target, loop, ink, test_size=0.5, stratify=data.target, random_state=args.seed)
    train_set, test = (tuple(torch.as_tensor(a) for a in split[i::2]) for i in (0, 1))
    epochs = 2 if args.quick else 40

    rows, curves = [], {}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-time imports, outside the timings
    for method in METHODS:
        with Timer() as timer:
            model, curves[method], weights = train(method, train_set, test, epochs=epochs, seed=args.seed)
        losses, scores = evaluate(model, test)
        name = "weigh_losses geometric" if method == "geometric" else method
        rows.append((name, losses[0], scores[0], losses[1], scores[1], losses[2], scores[2],
                     "/".join(f"{w:.2f}" for w in weights / weights.sum()), f"{timer.seconds:.1f}"))
    print_table(f"test split of digits ({len(test[0])} images), {epochs} epochs; weight shares: the trunk's task "
                f"weights (digit/loop/ink) over their sum, mean of the last epoch",
                ("method", "digit CE", "digit acc.", "loop BCE", "loop acc.", "ink MSE", "ink R2", "weight shares",
                 "train s"), rows)

    def draw(plt):
        figure, axes = plt.subplots(1, 3, figsize=(11, 3.6))
        for method, curve in curves.items():
            for k, axis in enumerate(axes):
                axis.plot(range(1, epochs + 1), curve[:, k], label=method)
        for axis, title in zip(axes, ("digit: cross-entropy", "loop: binary cross-entropy", "ink: squared error")):
            axis.set_title(title, fontsize=10)
            axis.set_xlabel("epoch")
            axis.set_yscale("log")
        axes[0].set_ylabel("test loss")
        axes[0].legend(fontsize=8)

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
