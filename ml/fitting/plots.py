"""Plots people would rather look at than read: training curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: workers and CI have no display

import matplotlib.pyplot as plt
import numpy as np

from ml.serving.artifacts import NUM_CLASSES, ModelBundle


def plot_training_curves(history: dict, path: Path, *, title: str) -> None:
    """Loss and accuracy per epoch, train and test; ``history`` is one model's, or a dict of
    ensemble members' histories by name (one line each)."""
    runs = history if history and all(isinstance(v, dict) for v in history.values()) else {"": history}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for run, run_history in runs.items():
        epochs = np.arange(1, len(run_history["loss"]) + 1)
        prefix = f"{run} " if run else ""
        for key, label in (("loss", "train"), ("val_loss", "test")):
            if key in run_history:
                ax_loss.plot(epochs, run_history[key], marker="o", label=prefix + label)
        for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
            if key in run_history:
                ax_acc.plot(epochs, np.asarray(run_history[key]) * 100, marker="o", label=prefix + label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, path: Path, *, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # Log colour scale: the diagonal holds ~1000 per cell and the errors a handful.
    shown = np.log10(matrix + 1)
    image = ax.imshow(shown, cmap="Blues")
    limit = shown.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if shown[row, col] > limit else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted digit", ylabel="true digit")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title}\naccuracy {accuracy:.2%} of {matrix.sum():,}")
    fig.colorbar(image, ax=ax, label="log10(count + 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_coverage_accuracy(curves: dict, path: Path, *, title: str) -> None:
    """Accuracy of the answers against the share of inputs answered, answering the most
    confident first; ``curves``: name -> (coverage, accuracy, (coverage, accuracy) of the
    verdicts as served), that point marked on each curve."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (coverage, accuracy, (served_coverage, served_accuracy)) in curves.items():
        (line,) = ax.plot(coverage * 100, accuracy * 100, label=name)
        ax.plot(
            served_coverage * 100,
            served_accuracy * 100,
            marker="o",
            color=line.get_color(),
            label=f"{name}: the 'digit' verdicts ({served_coverage:.1%} answered, {served_accuracy:.2%} right)",
        )
    low = min(float(np.min(accuracy[len(accuracy) // 2 :])) for _, accuracy, _ in curves.values())
    ax.set(
        xlabel="inputs answered as a digit, most confident first (%)",
        ylabel="answers right (%)",
        title=title,
        ylim=(min(99.0, low * 100 - 0.2), 100.05),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_bundle_plots(bundle: ModelBundle, *, history: dict, matrix: np.ndarray, title: str, name: str) -> None:
    """A bundle's training curves (``title``; ``history`` is one model's or its members' by
    name) and the confusion matrix of the model called ``name``."""
    plot_training_curves(history, bundle.curves_path, title=title)
    plot_confusion_matrix(np.asarray(matrix), bundle.confusion_path, title=f"{name}: MNIST test set")
