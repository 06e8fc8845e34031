"""The files a trained model travels with. No TensorFlow here: the web process reads these names."""

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
