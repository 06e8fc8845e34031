"""The digit models, with no Django: serving on one side, fitting on the other.

Serving (what a worker loads to read an upload) never imports fitting, not even inside a
function; fitting builds on serving (it measures what serving answers). Every module here is
in exactly one of the two lists, and tests hold both rules (``ml/tests/test_artifacts.py``)
and that no imports go round in a loop (``classifier/tests/test_architecture.py``).
"""

SERVING = (
    "artifacts",  # the model bundle's files and metadata
    "architectures",  # the networks' shapes (an ensemble's members, for Grad-CAM)
    "decoding_limits",  # what a file costs to decode, from its bytes, before it is decoded
    "explain",  # Grad-CAM
    "heatmap",
    "inference",  # the Predictor
    "lines",  # the line reader, served
    "numbers",  # one digit or a whole number, read as the worker reads it
    "preprocessing",  # an upload to the model's input
    "quiet",
    "segment",  # a page to its digits
    "verdicts",  # thresholds and temperature, applied as data
)
FITTING = (
    "augment",  # augmentation and extra writer forms
    "calibration",  # fitting the temperature
    "choosing",  # choosing between models on every real set
    "data",  # MNIST
    "evaluation",  # measurements and the stand-ins they read
    "fitting",  # the fitting loop
    "judging",  # a retrained candidate against the active version on the fixed judging sets
    "line_training",  # fitting the line reader
    "negatives",  # generated non-digits
    "plots",
    "reject",  # fitting the detector and the thresholds
    "retrain",  # fine-tuning on corrections
    "styles",  # other writers' styles, the stand-ins
    "synth",  # realistic uploads and numbers, generated
    "train",  # recipes and the training command's work
)
