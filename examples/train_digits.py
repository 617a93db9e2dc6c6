"""Train a small CNN on scikit-learn's bundled digits (8x8 images, nothing downloaded) with
every conv and pooling layer from fastconv.torch.nn: fastconv's kernels forward and
backward, PyTorch's autograd, loss and optimizer around them.

    python examples/train_digits.py [--epochs 8] [--plot reports/train_digits_loss.png]

Prints a progress bar per epoch and the test accuracy; saves the loss curve.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tqdm import tqdm  # noqa: E402

import fastconv.torch as FT  # noqa: E402


def model():
    """Two fused conv+ReLU layers, max and adaptive average pooling, a linear classifier."""
    nn = FT.nn
    return torch.nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, activation="relu"),   # 8x8
        nn.MaxPool2d(2),                                     # 4x4
        nn.Conv2d(32, 64, 3, padding=1, activation="relu"),
        nn.AdaptiveAvgPool2d(2),                             # 2x2
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 4, 10),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parents[1] / "reports"
                        / "train_digits_loss.png")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None]
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=digits.target)
    x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]

    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    steps_per_epoch = -(-len(y_train) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, epochs=args.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    losses = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(y_train))
        bar = tqdm(range(0, len(order), args.batch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for i in bar:
            batch = order[i:i + args.batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {accuracy:.2%} on {len(y_test)} digits after {args.epochs} epochs, "
          f"{seconds:.1f} s of training")

    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.8)
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
           title=f"digits CNN on fastconv.torch: test accuracy {accuracy:.1%}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"loss curve: {args.plot}")


if __name__ == "__main__":
    main()
