from pathlib import Path

from django.core.management.base import BaseCommand

from classifier.landing import EXAMPLES, EXAMPLES_FILE, LANDING_DIR, png
from classifier.services.versions import model_path_default


class Command(BaseCommand):
    help = "Draw the landing page's examples, classify them with the model and write them to static/landing/."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, help="model directory or .keras file (default: the active model)")
        parser.add_argument("--out", type=Path, default=LANDING_DIR)

    def handle(self, *args, model, out, **options):
        import json

        from ml.serving.inference import Predictor

        predictor = Predictor(model or model_path_default())
        blobs = [png(draw()) for _, _, draw in EXAMPLES]
        results = predictor.predict_images(blobs)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for (name, caption, _), blob, result in zip(EXAMPLES, blobs, results, strict=True):
            prediction = result.prediction
            ranked = sorted(range(10), key=lambda digit: -prediction.probabilities[digit])
            (out / name).write_bytes(blob)
            written.append(
                {
                    "file": name,
                    "caption": caption,
                    "digit": prediction.digit,
                    "confidence": round(prediction.confidence, 6),
                    "runner_up": ranked[1],
                    "verdict": prediction.verdict,
                    "reason": prediction.reason,
                }
            )
            self.stdout.write(f"{name}: {prediction.digit} at {prediction.confidence:.1%}, {prediction.verdict}")
        (out / EXAMPLES_FILE).write_text(json.dumps(written, indent=2) + "\n")
        self.stdout.write(self.style.SUCCESS(f"wrote {len(written)} examples to {out}"))
