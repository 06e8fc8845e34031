"""Inference benchmark: single-image latency and batch throughput of the shipped model.

Prints figures next to Keras' ``model.predict`` on the same model in the same run, and
the ratios. Run: ``make bench`` (or ``.venv/bin/python bench/inference.py [--model DIR]``).
``--numbers N`` measures reading whole numbers instead: ms per digit of N rendered numbers
beside ms per single-digit upload, both in batches of 32 images, in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack import MNIST_DIR  # noqa: E402

from ml.fitting.data import load_mnist  # noqa: E402
from ml.fitting.synth import number_set, realistic_set  # noqa: E402
from ml.serving.artifacts import to_model_array  # noqa: E402
from ml.serving.inference import Predictor  # noqa: E402
from ml.serving.numbers import read_numbers  # noqa: E402
from ml.serving.preprocessing import to_model_input  # noqa: E402


def percentiles(samples_ms: list[float]) -> str:
    q = np.percentile(samples_ms, [50, 95, 99])
    return f"p50 {q[0]:7.3f} ms  p95 {q[1]:7.3f} ms  p99 {q[2]:7.3f} ms"


def timed(fn, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def timed_each(fn, items) -> list[float]:
    samples = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def tflite_runner(model):
    """The same model converted to TFLite, as a function of a batch (measured, not shipped)."""
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # the converter narrates its export
        converted = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = tf.lite.Interpreter(model_content=converted)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if shape[0] != batch.shape:
            interpreter.resize_tensor_input(source, batch.shape)
            interpreter.allocate_tensors()
            shape[0] = batch.shape
        interpreter.set_tensor(source, batch)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return run


def numbers_mode(predictor: Predictor, test, count: int) -> None:
    """The worker's path for numbers (segment, score doubtful groups, one model call for all
    digits) per digit, and for single digits per image, beside the single-digit path per
    image, batches of 32 images."""
    numbers = [upload.data for upload in number_set(test.images, test.labels, count=count, seed=7)]
    singles = [upload.data for upload in realistic_set(test.images, test.labels, count=count, seed=7)]
    read_numbers(predictor, numbers[:32])  # warm up: tracing, first allocations
    predictor.predict_images(singles[:32])

    def per_item(fn, blobs, items_of) -> list[float]:
        samples = []
        for chunk in (blobs[i : i + 32] for i in range(0, len(blobs), 32)):
            started = time.perf_counter()
            results = fn(chunk)
            samples.append((time.perf_counter() - started) * 1000 / max(items_of(results), 1))
        return samples

    def read(blobs):
        return read_numbers(predictor, blobs)

    per_digit = per_item(read, numbers, lambda results: sum(len(r.digits) for r in results))
    # What people get for a single digit (the worker reads it in auto, weighing a number too)
    # beside the single-digit path, chunk by chunk in turn: a busy machine slows both alike.
    per_image, per_single = [], []
    for _ in range(3):
        for chunk in (singles[i : i + 32] for i in range(0, len(singles), 32)):
            per_image += per_item(predictor.predict_images, chunk, len)
            per_single += per_item(read, chunk, len)
    digits = sum(len(r.digits) for r in read_numbers(predictor, numbers))
    image_ms = statistics.median(per_image)
    print(f"== whole numbers: {count} rendered numbers ({digits} digits found), batches of 32 images ==")
    print(f"read_numbers    p50 {statistics.median(per_digit):7.3f} ms per digit     (target: under 3 ms)")
    print(f"predict_images  p50 {image_ms:7.3f} ms per single-digit image")
    print(f"ratio (p50)     {statistics.median(per_digit) / image_ms:.2f}x a single digit's cost (target: at most 3x)")
    print(f"read_numbers    p50 {statistics.median(per_single):7.3f} ms per single-digit image (auto: the worker's)")
    print(f"ratio (p50)     {statistics.median(per_single) / image_ms:.2f}x predict_images (target: at most 1.2x)")


def model_only(predictor: Predictor, x: np.ndarray) -> list[float]:
    """The model alone, one image at a time, against ``model.predict``; its samples (ms)."""
    model = predictor.model
    print("\n== model only, one image at a time ==")
    direct = timed(lambda: predictor.probabilities(x[:1]), 300)
    baseline = timed(lambda: model.predict(x[:1], verbose=0), 100)
    print(f"Predictor (tf.function) {percentiles(direct)}")
    print(f"model.predict           {percentiles(baseline)}")
    print(f"ratio (p50)             {statistics.median(baseline) / statistics.median(direct):.1f}x faster")
    return baseline


def preprocessing(predictor: Predictor, uploads) -> None:
    """Preprocessing, and preprocessing with the model, one realistic upload at a time."""
    print("\n== preprocessing + model, one realistic upload at a time ==")
    preprocess = []
    end_to_end = []
    for upload in uploads:
        started = time.perf_counter()
        model_input = to_model_input(upload.data)
        middle = time.perf_counter()
        predictor.probabilities(model_input.array[np.newaxis])
        finished = time.perf_counter()
        preprocess.append((middle - started) * 1000)
        end_to_end.append((finished - started) * 1000)
    print(f"preprocessing           {percentiles(preprocess)}")
    print(f"preprocessing + model   {percentiles(end_to_end)}")
    by_kind: dict[str, list[float]] = {}
    for upload, ms in zip(uploads, preprocess, strict=True):
        by_kind.setdefault(upload.scenario, []).append(ms)
    for kind, samples in sorted(by_kind.items()):
        print(f"  preprocessing {kind:<11} p50 {statistics.median(samples):7.3f} ms")


def worker_path(predictor: Predictor, mnist_pngs: list[bytes], uploads) -> None:
    """Decoding, preprocessing and the model per image, one at a time and in batches of 32."""
    print("\n== the worker's path per image: decode + preprocess + model (predict_images) ==")
    realistic = [upload.data for upload in uploads]
    for label, blobs in [("MNIST-style PNG uploads", mnist_pngs), ("realistic uploads (photos, scans...)", realistic)]:
        single = timed_each(lambda blob: predictor.predict_images([blob]), blobs)
        batched = [
            ms / len(chunk)
            for chunk in (blobs[i : i + 32] for i in range(0, len(blobs) - 31, 32))
            for ms in timed(lambda chunk=chunk: predictor.predict_images(chunk), 1)
        ]
        print(f"{label}")
        print(f"  one at a time           {percentiles(single)}")
        print(f"  in batches of 32        p50 {statistics.median(batched):7.3f} ms per image   (target: p50 <= 2 ms)")


def tflite_against(predictor: Predictor, x: np.ndarray) -> None:
    """The model call as tf.function and as TFLite, and what the reject option adds to it."""
    print("\n== the model call: tf.function against TFLite (same weights) ==")
    tflite = tflite_runner(predictor.model)
    batch32 = x[:32]
    for label, fn in [("tf.function", predictor.probabilities), ("TFLite", tflite)]:
        one = timed(lambda fn=fn: fn(x[:1]), 300)
        many = [ms / 32 for ms in timed(lambda fn=fn: fn(batch32), 100)]
        print(
            f"{label:<12} one image p50 {statistics.median(one):6.3f} ms   in batches of 32: "
            f"p50 {statistics.median(many):6.3f} ms per image"
        )
    difference = float(np.abs(tflite(x[:1000]) - predictor.probabilities(x[:1000], calibrated=False)).max())
    print(f"largest probability difference, TFLite vs tf.function, 1,000 test images: {difference:.1e}")
    if predictor.detector is not None:
        alone = [ms / 32 for ms in timed(lambda: predictor.probabilities(batch32), 100)]
        both = [ms / 32 for ms in timed(lambda: predictor.predict_arrays(batch32), 100)]
        print(
            f"the model with its reject option (detector, calibration, verdicts), batches of 32: "
            f"p50 {statistics.median(both):6.3f} ms per image against {statistics.median(alone):6.3f} ms "
            f"for the model alone (issue 17: under 1 ms)"
        )


def throughput(predictor: Predictor, x: np.ndarray, *, batch: int, baseline: list[float]) -> None:
    """Images a second in batches: the Predictor, ``model.predict`` batched and one by one."""
    model = predictor.model
    print(f"\n== batch throughput, batches of {batch} ==")
    batches = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]

    def run_all(fn) -> float:
        started = time.perf_counter()
        for chunk in batches:
            fn(chunk)
        return len(batches) * batch / (time.perf_counter() - started)

    fast = run_all(predictor.probabilities)
    slow = run_all(lambda chunk: model.predict(chunk, verbose=0))
    one_by_one = 1000 / statistics.median(baseline)
    print(f"Predictor (tf.function) {fast:9.0f} images/s")
    print(f"model.predict (batched) {slow:9.0f} images/s   ratio {fast / slow:.1f}x")
    print(f"model.predict (1 by 1)  {one_by_one:9.0f} images/s   ratio {fast / one_by_one:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "deep")
    parser.add_argument("--images", type=int, default=300, help="realistic uploads for the latency run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--numbers", type=int, default=0, help="measure reading this many whole numbers instead")
    args = parser.parse_args()

    test = load_mnist(MNIST_DIR).test
    predictor = Predictor(args.model)
    model = predictor.model
    x = to_model_array(test.images)
    print(f"model {predictor.model_path}  ({model.count_params():,} parameters)")
    if args.numbers:
        numbers_mode(predictor, test, args.numbers)
        return

    # Warm both paths up: tracing and first-call allocation are not what we measure.
    predictor.probabilities(x[:1])
    predictor.probabilities(x[: args.batch])
    model.predict(x[:1], verbose=0)
    model.predict(x[: args.batch], verbose=0)

    baseline = model_only(predictor, x)
    uploads = realistic_set(test.images, test.labels, count=args.images, seed=7)
    preprocessing(predictor, uploads)
    worker_path(predictor, [encode_png(255 - image) for image in test.images[:512]], uploads)
    tflite_against(predictor, x)
    throughput(predictor, x, batch=args.batch, baseline=baseline)


if __name__ == "__main__":
    main()
