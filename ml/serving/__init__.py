"""Serving: an upload's bytes to a reading, in the web process (judging a file before it is
stored, the draw page's preview) and in the classifying worker.

``artifacts`` the model bundle's files and metadata (no Keras); ``readings`` the reading modes
(declared once); ``architectures`` the networks and their recipes; ``decoding_limits`` what a
file costs to decode, from its bytes; ``preprocessing`` an upload to the model's input;
``segment`` a page to its digits, touching ones cut apart by ``cutting``; ``lines`` the line
reader; ``numbers`` one digit or a whole number, read as the worker reads it; ``inference`` the
``Predictor``; ``verdicts`` thresholds and temperature applied as data; ``explain``/``heatmap``
Grad-CAM; ``quiet`` TensorFlow's start-up chatter silenced.

Nothing here imports ``ml.fitting``.
"""
