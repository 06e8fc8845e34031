"""Fitting: what the training commands and the trainer run, never a web process or a
classifying worker.

``data`` MNIST; ``train`` the training command's work, from recipes; ``loop`` the fitting
loop; ``augment`` augmentation and other writers' forms; ``retrain`` fine-tuning on
corrections and the gate; ``judging`` a candidate against the active version on the fixed
judging sets; ``reject`` the detector and its thresholds; ``calibration`` the temperature;
``line_training`` the line reader; ``synth``, ``negatives``, ``styles`` generated uploads,
numbers, non-digits and other writers' stand-ins; ``evaluation`` and ``choosing`` the
measurements and the choice between models on every real set; ``plots``.

Fitting builds on ``ml.serving``, never the reverse.
"""
